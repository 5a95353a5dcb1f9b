// LOCAL STAND-IN for pg_net's background worker: delivers the requests that
// net.http_post queued (local/sql/pg_net_standin.sql) once their transaction has
// committed, and records each outcome in net._http_response, as pg_net does. Like
// pg_net, delivery is at most once: a request is taken off the queue before it is sent.
// Run as a daemon by `deno task local start`.

import type postgres from "postgres";
import { survivingPool } from "./surviving_pool.ts";

interface Queued {
  id: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  body: Uint8Array | null;
  timeout_milliseconds: number;
}

async function deliver(sql: postgres.Sql, r: Queued): Promise<void> {
  let outcome: Record<string, unknown>;
  try {
    const response = await fetch(r.url, {
      method: r.method,
      headers: r.headers,
      body: r.method === "GET" || !r.body ? undefined : new Uint8Array(r.body),
      signal: AbortSignal.timeout(r.timeout_milliseconds),
    });
    outcome = {
      status_code: response.status,
      content_type: response.headers.get("content-type"),
      headers: Object.fromEntries(response.headers),
      content: await response.text(),
      timed_out: false,
      error_msg: null,
    };
  } catch (e) {
    const timedOut = (e as Error).name === "TimeoutError";
    outcome = {
      status_code: null,
      content_type: null,
      headers: null,
      content: null,
      timed_out: timedOut,
      error_msg: timedOut
        ? `Timeout of ${r.timeout_milliseconds} ms reached`
        : (e as Error).message,
    };
  }
  await sql`insert into net._http_response ${
    sql({ id: r.id, ...outcome } as Record<string, postgres.SerializableParameter>)
  }`;
}

export async function deliverQueued(sql: postgres.Sql, batch = 20): Promise<number> {
  const taken = await sql<Queued[]>`
    delete from net.http_request_queue q
    where q.id in (select id from net.http_request_queue order by id limit ${batch} for update skip locked)
    returning q.id, q.method, q.url, q.headers, q.body, q.timeout_milliseconds`;
  await Promise.all(taken.map((r) => deliver(sql, r)));
  return taken.length;
}

if (import.meta.main) {
  const sql = survivingPool({ max: 4 });
  for (;;) {
    try {
      if ((await deliverQueued(sql())) > 0) continue;
    } catch (e) {
      console.error(
        JSON.stringify({ event: "pg_net_delivery_error", error: (e as Error).message }),
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
