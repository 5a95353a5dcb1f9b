// One JSON line per event, so a log drain can filter on `event` without parsing prose.
// Callers pass only what is safe to print: keys and claim tokens never reach here.

export type LogFields = Record<string, unknown>;

export function log(event: string, fields: LogFields = {}): void {
  const level = fields.level ??
    (event.endsWith("_failed") || event.endsWith("_error") ? "error" : "info");
  console.log(JSON.stringify({ ts: new Date().toISOString(), level, event, ...fields }));
}

/** The message of anything thrown, for a log line or a JSON error body. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
