// Drive, user and server identifiers are UUIDs: anything else never reaches a URL or a body.
import { UsageError } from "./errors.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(text: string): boolean {
  return UUID.test(text);
}

/** A UUID from the user (exit status 2 when it is not one), lower-cased. */
export function checkUuid(text: string | undefined, what: string): string {
  if (!text) throw new UsageError(`missing ${what}`);
  if (!UUID.test(text))
    throw new UsageError(
      `invalid ${what} '${text.slice(0, 60)}': expected a UUID like 8f9b42b1-1c5a-4a1e-9d8a-0123456789ab`,
    );
  return text.toLowerCase();
}
