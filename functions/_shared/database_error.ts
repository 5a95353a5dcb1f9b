// A failed RPC becomes a JSON 5xx: 503 when the database (or PostgREST in front of it)
// cannot be reached, so the caller retries later; 500 for anything else.

import { BackfillRpcError } from "./backfill_client.ts";
import { json } from "./http.ts";
import { errorMessage, log } from "./log.ts";

/** SQLSTATE classes and PostgREST codes that mean "not reachable right now" (PGRST003: no pool connection in time). */
const UNAVAILABLE = /^(08|53|57P|PGRST00[0-3])/;
/** What the database or PostgREST answered with; anything else never reached them. */
const ANSWERED = /^([0-9A-Z]{5}|PGRST\d{3})$/;

export function databaseErrorResponse(error: unknown): Response {
  const code = error instanceof BackfillRpcError ? error.code : undefined;
  // No code (supabase-js: fetch failed) or a driver's own (postgres.js: ECONNREFUSED).
  const unavailable = !code || !ANSWERED.test(code) || UNAVAILABLE.test(code);
  const status = unavailable ? 503 : 500;
  log("database_error", { status, code, error: errorMessage(error) });
  return json({ error: unavailable ? "database unavailable" : "database error", code }, status);
}
