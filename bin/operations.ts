// Every operation the drivekit command runs, in the order `drivekit --help` lists them: its name,
// its summary (the first paragraph of the script's description; test/cli/drivekit.test.ts holds
// them equal) and its script, loaded only when asked for, so that --help loads none of them.
// Adding an operation is one line here.
import type { AnyOperation } from "../lib/cli/command.ts";

export interface OperationEntry {
  summary: string;
  load: () => Promise<{ default: AnyOperation }>;
}

const op = (summary: string, load: OperationEntry["load"]): OperationEntry => ({ summary, load });

export const OPERATIONS: Readonly<Record<string, OperationEntry>> = {
  list: op("List the UUIDs of your drives, one a line", () => import("../scripts/list.ts")),
  info: op("Print a drive's info, or every drive's, as KEY VALUE lines", () => import("../scripts/info.ts")),
  create: op("Create a drive and print its info", () => import("../scripts/create.ts")),
  set: op("Change a drive's fields and print its info", () => import("../scripts/set.ts")),
  destroy: op("Destroy a drive and its data", () => import("../scripts/destroy.ts")),
  clone: op("Copy a drive to a new one on the server and print its UUID", () => import("../scripts/clone.ts")),
  resize: op("Change a drive's size and print its info", () => import("../scripts/resize.ts")),
  image: op("API 1.0: copy a drive onto another on the server", () => import("../scripts/image.ts")),
  read: op("API 1.0: read up to 4M of a drive", () => import("../scripts/read.ts")),
  write: op("API 1.0: write up to 4M to a drive", () => import("../scripts/write.ts")),
  upload: op("Upload an image to a new drive, or to an existing one with -d", () => import("../scripts/upload.ts")),
  download: op("Download a whole drive to a file", () => import("../scripts/download.ts")),
  copy: op(
    "Copy a drive to another endpoint, location, account or API generation, streamed",
    () => import("../scripts/copy.ts"),
  ),
  snapshot: op(
    "API 2.0: snapshot a drive, list, show, clone or destroy snapshots",
    () => import("../scripts/snapshot.ts"),
  ),
};
