// What a transfer checks of a drive API before it makes anything: each side's credentials, with
// one cheap authenticated call (a refusal said as such), and the source drive's size and name.
import type { Connection } from "../connect.ts";
import { ApiError, OperationError } from "../errors.ts";
import { driveInfo, listDrives, sizeOf } from "../api1/drives.ts";
import { getDrive, probeDrives } from "../api2/drives.ts";

/** One side's call, its refusal of the credentials said as such (status 401: the rest is the server's own words). */
export async function onSide<T>(
  side: "source" | "destination",
  connection: Connection,
  call: () => Promise<T>,
): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401)
      throw new OperationError(
        `the ${side} (API ${connection.config.api}, ${connection.config.base.origin}) refused its credentials: ${error.message}`,
        { cause: error },
      );
    throw error;
  }
}

/** The source drive's size and name: one authenticated call, which checks the source's credentials too. */
export async function describeDrive(from: {
  connection: Connection;
  drive: string;
}): Promise<{ size: number; name?: string }> {
  const { connection, drive } = from;
  return onSide("source", connection, async () => {
    if (connection.config.api === 1) {
      const info = await driveInfo(connection.client, drive);
      return { size: sizeOf(info, drive), name: info.name };
    }
    const found = await getDrive(connection.client, drive);
    if (found.size === undefined) throw new OperationError(`drive ${drive}: the server gave no size`);
    return { size: found.size, name: found.name };
  });
}

/** One side's credentials, checked with one cheap authenticated call (API 1.0: the drive list; 2.0: one drive of it). */
export function checkAccess(connection: Connection, side: "source" | "destination"): Promise<void> {
  const { client } = connection;
  return onSide(side, connection, async () => {
    if (connection.config.api === 1) await listDrives(client);
    else await probeDrives(client);
  });
}
