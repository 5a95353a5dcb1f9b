// Who may call the backfill functions: whoever presents the accepted key, in the
// `apikey` header or as `Authorization: Bearer <key>`.

import { type Env, projectSecretKey } from "./project.ts";

/**
 * The key callers must present: BACKFILL_SCHEDULER_SECRET when set, else the project's
 * secret key. Undefined when none is configured: then nobody is let in.
 */
export function acceptedKey(env: Env): string | undefined {
  return env("BACKFILL_SCHEDULER_SECRET") || projectSecretKey(env);
}

/** The keys a request presents, from either header (both may be present). */
export function presentedKeys(headers: Headers): string[] {
  const keys: string[] = [];
  const apikey = headers.get("apikey");
  if (apikey) keys.push(apikey);
  const authorization = headers.get("authorization");
  const bearer = authorization?.match(/^Bearer (.+)$/s)?.[1];
  if (bearer) keys.push(bearer);
  return keys;
}

const encoder = new TextEncoder();

/**
 * Constant-time equality: both sides are hashed to 32 bytes first, so neither the
 * length nor the position of the first difference shows in the time taken, and every
 * byte is compared whatever the earlier ones were.
 */
export async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [da, db] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(a)),
    crypto.subtle.digest("SHA-256", encoder.encode(b)),
  ]);
  const x = new Uint8Array(da);
  const y = new Uint8Array(db);
  let difference = 0;
  for (let i = 0; i < x.length; i++) difference |= x[i] ^ y[i];
  return difference === 0;
}

/** True when any presented key equals the accepted one. Every presented key is compared. */
export async function isAuthorized(
  headers: Headers,
  accepted: string | undefined,
): Promise<boolean> {
  if (!accepted) return false;
  const results = await Promise.all(
    presentedKeys(headers).map((k) => constantTimeEqual(k, accepted)),
  );
  return results.includes(true);
}
