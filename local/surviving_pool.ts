// A postgres.js pool for the stack's long-running daemons (gateway, pg_net worker) that
// survives a database restart, as PostgREST and pg_net do.
//
// postgres.js 3.4 under Deno can throw from a timer when a connection dies mid-write (its
// socket is already gone), and the pool it happened in is left with queries that never get
// sent. Uncaught, the error would end the process: log it, swap in a fresh pool, and end the
// old one (its stuck calls then fail instead of hanging).

import postgres from "postgres";
import { DB_URL } from "./config.ts";

/** Returns the current pool; `onNewPool` hears of each replacement. */
export function survivingPool(
  options: { max: number },
  onNewPool: (sql: postgres.Sql) => void = () => {},
): () => postgres.Sql {
  const pool = () => postgres(DB_URL, { onnotice: () => {}, connect_timeout: 5, ...options });
  let sql = pool();
  const survive = (e: Event & { error?: unknown; reason?: unknown }) => {
    e.preventDefault();
    const error = e.error ?? e.reason;
    console.error(
      JSON.stringify({
        event: "uncaught_error",
        error: (error as Error)?.message ?? String(error),
      }),
    );
    const old = sql;
    sql = pool();
    onNewPool(sql);
    old.end({ timeout: 1 }).catch(() => {});
  };
  globalThis.addEventListener("error", survive);
  globalThis.addEventListener("unhandledrejection", survive);
  return () => sql;
}
