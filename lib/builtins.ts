// node:net, node:tls and node:zlib each load node:stream's JavaScript when imported: 10-15 ms of
// every run's start, before its first request, even in runs that open no socket of their own and
// (de)compress nothing (bench/RESULTS-speed.md, "Figures the code relies on": the start). They
// are loaded on first use instead; a later call is a lookup in the module cache.
import type * as Net from "node:net";
import type * as Tls from "node:tls";
import type * as Zlib from "node:zlib";

export const nodeNet = (): typeof Net => require("node:net");
export const nodeTls = (): typeof Tls => require("node:tls");
export const nodeZlib = (): typeof Zlib => require("node:zlib");
