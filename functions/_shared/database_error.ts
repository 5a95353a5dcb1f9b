// A failed RPC becomes a JSON 5xx: 503 when the database (or PostgREST in front of it)
// cannot be reached, so the caller retries later; 500 for anything else.

import { BackfillRpcError } from "./backfill_client.ts";
import { json } from "./http.ts";
import { errorMessage, log } from "./log.ts";

export function databaseErrorResponse(error: unknown): Response {
  const code = error instanceof BackfillRpcError ? error.code : undefined;
  const unavailable = !(error instanceof BackfillRpcError) || /^(08|57P|53)/.test(code ?? "") ||
    code === "PGRST000" || code === "PGRST001" || code === "PGRST002";
  const status = unavailable ? 503 : 500;
  log("database_error", { status, code, error: errorMessage(error) });
  return json({ error: unavailable ? "database unavailable" : "database error", code }, status);
}
