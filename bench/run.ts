// `deno task bench`: how close claiming and completing come to this machine's limit,
// and whether they stay there as rows pile up. A benchmark, not a test: it asserts
// nothing about time. Every figure comes from one run on one throwaway cluster
// (BACKFILL_STACK_DIR and BACKFILL_PORT_OFFSET, set by the task), with 32 pgbench
// clients on 2 threads; each rate is also given as a ratio of the ceiling measured in
// the same run, since absolute rates swing with the machine's load.

import postgres from "postgres";
import { createClient } from "@supabase/supabase-js";
import { join } from "node:path";
import { API_URL, DB_PORT, DB_URL, REPO_ROOT, STACK_DIR } from "../local/config.ts";
import { start, stop } from "../local/cli.ts";
import { keys } from "../local/keys.ts";
import {
  backfillClient,
  fromPostgres,
  fromSupabase,
} from "../functions/_shared/backfill_client.ts";
import { createScheduler } from "../functions/backfill-scheduler/scheduler.ts";

const CLIENTS = 32;
const THREADS = 2;
const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 10);
const SUSTAINED_SECONDS = Number(Deno.env.get("BENCH_SUSTAINED_SECONDS") ?? 60);
const BENCH_DIR = join(REPO_ROOT, "bench");

if (!STACK_DIR.includes("bench")) {
  throw new Error(`refusing to benchmark in ${STACK_DIR}: run it as \`deno task bench\``);
}

const figures: Record<string, number | string> = {};
function report(key: string, value: number | string) {
  figures[key] = typeof value === "number" ? Number(value.toFixed(value < 10 ? 3 : 1)) : value;
  console.log(`${key}=${figures[key]}`);
}

await stop().catch(() => {});
await Deno.remove(STACK_DIR, { recursive: true }).catch(() => {});
await start();
const sql = postgres(DB_URL, { max: 4, onnotice: () => {} });

interface PgbenchResult {
  tps: number;
  /** tps of each 10-second interval (-P 10). */
  intervals: number[];
}

async function pgbench(
  script: string,
  opts: {
    seconds?: number;
    transactions?: number;
    vars?: Record<string, string | number>;
    progress?: boolean;
  } = {},
): Promise<PgbenchResult> {
  const args = [
    "-n",
    "-M",
    "extended",
    "-c",
    String(CLIENTS),
    "-j",
    String(THREADS),
    "-h",
    "127.0.0.1",
    "-p",
    String(DB_PORT),
    "-U",
    "postgres",
    "-f",
    join(BENCH_DIR, script),
  ];
  if (opts.transactions) args.push("-t", String(opts.transactions));
  else args.push("-T", String(opts.seconds ?? SECONDS));
  if (opts.progress) args.push("-P", "10");
  for (const [k, v] of Object.entries(opts.vars ?? {})) args.push("-D", `${k}=${v}`);
  args.push("postgres");
  const out = await new Deno.Command("pgbench", { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const tps = text.match(/^tps = ([\d.]+)/m);
  if (out.code !== 0 || !tps) throw new Error(`pgbench ${script} failed:\n${text.slice(-2000)}`);
  const intervals = [...text.matchAll(/^progress: [\d.]+ s, ([\d.]+) tps/gm)].map((m) =>
    Number(m[1])
  );
  return { tps: Number(tps[1]), intervals };
}

/** Replaces the queue with `sources` × `months` rows, `doneShare` of them completed or failed. */
async function load(sources: number, months: number, doneShare = 0) {
  await sql`truncate public.backfill_log`;
  // A fixed pseudo-random spread of which months are done (deterministic, per row).
  await sql`
    insert into public.backfill_log
      (source, month, status, attempts, claim_token, claimed_at, completed_at, last_error)
    select 'bench-' || s, make_date(1000 + m / 12, m % 12 + 1, 1), st,
           case when st = 'pending' then 0 else 1 end,
           case when st = 'completed' then gen_random_uuid() end,
           case when st <> 'pending' then now() end,
           case when st = 'completed' then now() end,
           case when st = 'failed' then 'bench' end
    from (select s, m,
                 case when (s * 7919 + m * 104729) % 1000 >= ${
    Math.round(doneShare * 1000)
  } then 'pending'
                      when (s + m) % 10 = 0 then 'failed'
                      else 'completed' end as st
          from generate_series(1, ${sources}) s, generate_series(0, ${months - 1}) m) x`;
  await sql`vacuum analyze public.backfill_log`;
}

const claimedRows = async () =>
  Number(
    (await sql`select count(*) as n from public.backfill_log where status = 'processing'`)[0].n,
  );

async function claimRowsPerSecond(limit: number, seconds: number) {
  await load(100, 2400);
  const t0 = performance.now();
  await pgbench("claim.sql", { seconds, vars: { limit } });
  const elapsed = (performance.now() - t0) / 1000;
  const rows = await claimedRows();
  if (rows >= 240_000) report(`warning_limit_${limit}`, "queue drained: rows/s is a lower bound");
  return rows / elapsed;
}

// ---- the ceiling, the claim and the cycle at 240k rows ----------------------------------
await sql`create table if not exists bench_ceiling (id integer primary key, n integer not null default 0)`;
await sql`insert into bench_ceiling select g from generate_series(1, 100000) g on conflict do nothing`;
await sql`vacuum analyze bench_ceiling`;
const ceilingBefore = (await pgbench("ceiling.sql")).tps;
report("ceiling_tps_before", ceilingBefore);

await load(100, 2400);
const claimTps = (await pgbench("claim.sql", { vars: { limit: 1 } })).tps;
report("claim_tps", claimTps);

await load(100, 2400);
const cycleTps = (await pgbench("cycle.sql")).tps;
report("cycle_tps", cycleTps);

// ---- batch claims ------------------------------------------------------------------------
const rows1 = await claimRowsPerSecond(1, 3);
const rows100 = await claimRowsPerSecond(100, 3);
report("claim_rows_per_s_limit_1", rows1);
report("claim_rows_per_s_limit_100", rows100);

// The same 100-month batches completed in one call each (complete_backfill_months).
await load(100, 2400);
const batchCycleRows = (await pgbench("batch_cycle.sql", { seconds: 3 })).tps * 100;
report("batch_cycle_rows_per_s", batchCycleRows);

// ---- flat as rows pile up ----------------------------------------------------------------
// A fixed number of claims (-t), so the small queue is not drained mid-run.
await load(1, 20_000);
const fresh20k = (await pgbench("claim.sql", { transactions: 300, vars: { limit: 1 } })).tps;
await load(100, 10_000, 0.95);
const done1m = (await pgbench("claim.sql", { transactions: 300, vars: { limit: 1 } })).tps;
report("claim_tps_20k_fresh", fresh20k);
report("claim_tps_1m_95pct_done", done1m);

await load(100, 10_000);
const sustained = await pgbench("claim.sql", {
  seconds: SUSTAINED_SECONDS,
  vars: { limit: 1 },
  progress: true,
});
const first10 = sustained.intervals[0];
const last10 = sustained.intervals.at(-1)!;
report("sustained_claim_tps_first_10s", first10);
report("sustained_claim_tps_last_10s", last10);

// ---- under a pinned MVCC horizon ---------------------------------------------------------
await load(100, 2400);
const unpinned = (await pgbench("claim.sql", { vars: { limit: 1 } })).tps;
await load(100, 2400);
const holder = await sql.reserve();
await holder`begin isolation level repeatable read`;
await holder`select count(*) from public.backfill_log`;
const pinned = (await pgbench("claim.sql", { vars: { limit: 1 } })).tps;
await holder`rollback`;
holder.release();
report("claim_tps_unpinned", unpinned);
report("claim_tps_pinned_horizon", pinned);

// ---- the scheduler path ------------------------------------------------------------------
// Months/s claimed and handed to a no-op worker through the HTTP scheduler, against the
// same claims made directly through the RPC (PostgREST stand-in), same batch and callers.
const k = keys();
const rpcClient = backfillClient(
  fromSupabase(createClient(API_URL, k.secretKey, { auth: { persistSession: false } })),
);
const noopWorker = Deno.serve(
  { port: 0, hostname: "127.0.0.1", onListen: () => {} },
  () => new Response(null, { status: 202 }),
);
const scheduler = Deno.serve(
  { port: 0, hostname: "127.0.0.1", onListen: () => {} },
  createScheduler({
    client: rpcClient,
    acceptedKey: k.secretKey,
    workerUrl: `http://127.0.0.1:${noopWorker.addr.port}/`,
    workerKey: k.secretKey,
  }),
);
const schedulerUrl = `http://127.0.0.1:${scheduler.addr.port}/`;

async function drive(callers: number, seconds: number, once: () => Promise<number>) {
  const deadline = performance.now() + seconds * 1000;
  let months = 0;
  await Promise.all(Array.from({ length: callers }, async () => {
    while (performance.now() < deadline) months += await once();
  }));
  return months / seconds;
}
const BATCH = 10;
const CALLERS = 4;
await load(100, 2400);
const viaScheduler = await drive(CALLERS, SECONDS, async () => {
  const r = await fetch(schedulerUrl, {
    method: "POST",
    headers: { authorization: `Bearer ${k.secretKey}` },
    body: JSON.stringify({ limit: BATCH }),
  });
  const body = await r.json();
  return body.dispatched as number;
});
await load(100, 2400);
const viaRpc = await drive(
  CALLERS,
  SECONDS,
  async () => (await rpcClient.claim({ limit: BATCH })).length,
);
await load(100, 2400);
const direct = backfillClient(fromPostgres(sql));
const viaSql = await drive(
  CALLERS,
  SECONDS,
  async () => (await direct.claim({ limit: BATCH })).length,
);
report("scheduler_months_per_s", viaScheduler);
report("rpc_months_per_s", viaRpc);
report("sql_months_per_s", viaSql);
await scheduler.shutdown();
await noopWorker.shutdown();

const ceilingAfter = (await pgbench("ceiling.sql")).tps;
report("ceiling_tps_after", ceilingAfter);
const ceiling = (ceilingBefore + ceilingAfter) / 2;

const ratios = {
  claim_ratio: claimTps / ceiling,
  cycle_ratio: cycleTps / ceiling,
  limit100_over_limit1: rows100 / rows1,
  batch_cycle_over_cycle: batchCycleRows / cycleTps,
  flat_1m_over_20k: done1m / fresh20k,
  sustained_last_over_first: last10 / first10,
  pinned_over_unpinned: pinned / unpinned,
  scheduler_over_rpc: viaScheduler / viaRpc,
};
for (const [key, value] of Object.entries(ratios)) report(key, value);
console.log(Object.entries(ratios).map(([key, v]) => `${key}=${v.toFixed(2)}`).join(" "));

await sql.end();
await stop();
await Deno.remove(STACK_DIR, { recursive: true }).catch(() => {});
Deno.exit(0);
