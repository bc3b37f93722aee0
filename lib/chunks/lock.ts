// One run at a time per journal: a cron job that overlaps a manual run of the same transfer must
// not rewrite the same journal (and the same drive or .part) from two processes. The lock is a
// file beside the journal holding the owner's pid; a lock whose process is gone (kill -9, a
// reboot) is taken over without asking.
import { openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync, closeSync } from "node:fs";
import { basename } from "node:path";
import { OperationError } from "../errors.ts";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else
    return (error as { code?: string }).code === "EPERM";
  }
}

function ownerOf(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, "utf8").trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export class RunLock {
  private constructor(readonly path: string) {}

  /** Take the lock for the transfer whose journal is `journal`; `what` names it in the refusal. */
  static acquire(journal: string, what: string): RunLock {
    const path = `${journal}.lock`;
    // bounded: a second try only after taking over a dead owner's lock
    for (let attempt = 0; attempt < 3; attempt++) {
      let fd: number | undefined;
      try {
        fd = openSync(path, "wx", 0o600);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return new RunLock(path);
      } catch (error) {
        if ((error as { code?: string }).code !== "EEXIST") {
          // created but not written (a full disk): an empty lock must not stay behind
          if (fd !== undefined) {
            closeSync(fd);
            rmSync(path, { force: true });
          }
          throw new OperationError(`cannot create the lock ${path}: ${(error as Error).message}`);
        }
      }
      const owner = ownerOf(path);
      if (owner !== undefined && owner !== process.pid && alive(owner)) {
        throw new OperationError(
          `${what} is already running in process ${owner} (lock ${basename(path)}): wait for it to finish, or stop it (kill ${owner}) and run this again`,
        );
      }
      // the owner is gone: replace its lock in one step, then start over to make sure it is ours
      const temporary = `${path}.${process.pid}.tmp`;
      writeFileSync(temporary, `${process.pid}\n`, { mode: 0o600 });
      renameSync(temporary, path);
      if (ownerOf(path) === process.pid) return new RunLock(path);
    }
    throw new OperationError(`cannot take the lock ${path}: another run keeps taking it`);
  }

  release(): void {
    if (ownerOf(this.path) === process.pid) rmSync(this.path, { force: true });
  }
}
