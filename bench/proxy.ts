#!/usr/bin/env bun
// A CONNECT proxy on 127.0.0.1 as a process of its own, for bench/speed.ts's proxy rows (its CPU is
// not the client's): test/proxy-server.ts's TestProxy, which tunnels to 127.0.0.1:PORT. Prints its
// URL on stdout; SIGTERM stops it.
import { TestProxy } from "../test/proxy-server.ts";

const proxy = new TestProxy();
console.log(proxy.url());
const stop = () => {
  proxy.stop();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
