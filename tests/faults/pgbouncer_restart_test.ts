// Fault: PgBouncer (transaction mode, the pooler) killed mid-run and restarted. The served
// functions reach Postgres through the gateway, which (like PostgREST) holds its own direct
// connections; the pooler is what services holding a database URL use. So this workload runs
// entirely through the pooler: a scheduler (createScheduler) and two workers (createWorker,
// the real calendar processor) whose RPC client is postgres.js on POOLER_URL with
// prepare: false. Killed twice (SIGKILL, then SIGTERM = its immediate shutdown): the
// scheduler answers JSON 5xx while it is down, and every month ends completed exactly once.

import assert from "node:assert/strict";
import postgres from "postgres";
import { backfillClient, fromPostgres } from "../../functions/_shared/backfill_client.ts";
import { createScheduler } from "../../functions/backfill-scheduler/scheduler.ts";
import { createWorker } from "../../functions/backfill-worker/worker.ts";
import { calendarProcessor } from "../../functions/backfill-worker/processors/calendar.ts";
import { captureLogs, serve } from "../_support/stack.ts";
import { ensureUp, faultStack, paths, readPid, resilientPool, sleep } from "./_stack.ts";
import { runWorkload, untilProgress } from "./_workload.ts";

const KEY = "pooler-test-key";

Deno.test({
  name:
    "fault: PgBouncer killed (SIGKILL, SIGTERM) mid-run under pooler clients: JSON 5xx while down, every month completed exactly once",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = await faultStack();
    const pooler = resilientPool(s.poolerUrl, { max: 10, prepare: false, connect_timeout: 3 });
    const client = backfillClient(fromPostgres(pooler));
    // The calendar processor's one write, through the pooler instead of supabase-js.
    const rpc = async (fn: string, args: Record<string, unknown>) => {
      try {
        const [row] = await pooler.unsafe(
          `select public.${fn}(p_claim_token => $1::uuid, p_days => $2::text::jsonb) as v`,
          [args.p_claim_token as string, JSON.stringify(args.p_days)],
        );
        return { data: row.v, error: null };
      } catch (e) {
        const err = e as postgres.PostgresError;
        return { data: null, error: { code: String(err.code ?? ""), message: err.message } };
      }
    };
    const logs = captureLogs();
    const workers = [0, 1].map(() =>
      createWorker({
        client,
        acceptedKey: KEY,
        processorFor: () => calendarProcessor({ rpc } as any, { delayMs: 300 }),
      })
    );
    let next = 0;
    const served = serve((req) => workers[next++ % workers.length].handle(req));
    const scheduler = createScheduler({
      client,
      acceptedKey: KEY,
      workerUrl: served.url,
      workerKey: KEY,
    });
    let figures;
    try {
      figures = await runWorkload({
        name: "pgbouncer restart",
        s,
        sourceCount: 4,
        from: "2030-01-01",
        to: "2035-12-01", // 288 months
        fire: async (_source, body) => {
          const r = await scheduler(
            new Request("http://scheduler/", {
              method: "POST",
              headers: { apikey: KEY },
              body: JSON.stringify(body),
            }),
          );
          const json = /json/.test(r.headers.get("content-type") ?? "");
          return { status: json ? r.status : -r.status, body: await r.json() };
        },
        completions: (sources) => {
          const counts = new Map<string, number>();
          for (const e of logs.events()) {
            if (e.event !== "month_completed" || !sources.includes(e.source as string)) continue;
            const key = `${e.source} ${e.month}`;
            counts.set(key, (counts.get(key) ?? 0) + 1);
          }
          logs.restore();
          return counts;
        },
        faults: async (w) => {
          let faults = 0;
          for (const [at, signal] of [[0.2, "SIGKILL"], [0.55, "SIGTERM"]] as const) {
            await untilProgress(w, at);
            w.faulty = true;
            const pid = readPid(paths.pgbouncerPid);
            Deno.kill(pid, signal);
            faults++;
            await sleep(3_000);
            await ensureUp();
            w.faulty = false;
          }
          return faults;
        },
      });
    } finally {
      logs.restore();
      await Promise.all(workers.map((w) => w.idle()));
      await served.close();
      await pooler.end({ timeout: 5 });
    }
    assert.equal(figures.faults, 2);
  },
});
