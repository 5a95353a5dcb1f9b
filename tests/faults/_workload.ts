// A backfill workload on the fault stack, driven as pg_cron would drive it but harder:
// several scheduler callers in a loop (each call claims up to `limit` months of one source
// with a short lease and dispatches them to the worker), the reaper in a loop, and a fault
// injected meanwhile. At the end everything is checked from the database and the logs:
// every month completed, each exactly once (one `month_completed` per month, exactly its
// days in example_calendar_days), attempts within bounds, nothing left processing.

import assert from "node:assert/strict";
import { daysOfMonth } from "../../functions/backfill-worker/processors/calendar.ts";
import { countEvents, type FaultStack, sleep } from "./_stack.ts";

export interface SchedulerAnswer {
  status: number; // 0: no HTTP answer at all
  json: boolean;
  body: any;
  at: number;
  duringFault: boolean;
}

export interface Workload {
  sources: string[];
  total: number;
  answers: SchedulerAnswer[];
  /** Months completed so far (from the database; the last value read). */
  completed(): number;
  /** True while the test says a fault is in effect (answers are tagged with it). */
  faulty: boolean;
}

export interface WorkloadOptions {
  name: string;
  s: FaultStack;
  sourceCount?: number;
  from?: string;
  to?: string;
  limit?: number;
  leaseSeconds?: number;
  lanes?: number;
  deadlineMs?: number;
  /** One scheduler run for `source`; default: POST the served scheduler through the gateway. */
  fire?: (source: string, body: Record<string, unknown>) => Promise<{ status: number; body: any }>;
  /** Per `source month`, how many times a worker logged it completed. */
  completions?: (sources: string[]) => Map<string, number>;
  /** A worker process is killed: its last log lines may be lost with it. */
  workerKilled?: boolean;
  /** Runs after the months are enqueued and before the scheduler loop starts. */
  prepare?: (sources: string[]) => Promise<void>;
  /** Injects the faults; resolves when they are over (the stack is back). */
  faults: (w: Workload) => Promise<number>;
}

export interface Figures {
  name: string;
  months: number;
  faults: number;
  completedOnce: number;
  doubleCompletions: number;
  lost: number;
  retried: number;
  maxAttempts: number;
  schedulerCalls: number;
  answers5xx: number;
  seconds: number;
}

export async function postScheduler(
  s: FaultStack,
  body: Record<string, unknown>,
): Promise<{ status: number; body: any; json: boolean }> {
  const response = await fetch(s.schedulerUrl, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${s.secretKey}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
  });
  const text = await response.text();
  try {
    return {
      status: response.status,
      body: JSON.parse(text),
      json: /json/.test(response.headers.get("content-type") ?? ""),
    };
  } catch {
    return { status: response.status, body: text, json: false };
  }
}

export async function enqueueSources(s: FaultStack, count: number, from: string, to: string) {
  const sources = Array.from({ length: count }, () => `calendar:f-${crypto.randomUUID()}`);
  let total = 0;
  for (const source of sources) total += await s.client.enqueue({ source, from, to });
  return { sources, total };
}

export async function runWorkload(o: WorkloadOptions): Promise<Figures> {
  const { s } = o;
  const limit = o.limit ?? 10;
  const leaseSeconds = o.leaseSeconds ?? 10;
  const lanes = o.lanes ?? 3;
  const deadlineMs = o.deadlineMs ?? 150_000;
  const { sources, total } = await enqueueSources(
    s,
    o.sourceCount ?? 4,
    o.from ?? "2000-01-01",
    o.to ?? "2005-12-01",
  );
  await o.prepare?.(sources);
  let completed = 0;
  let done = false;
  const w: Workload = { sources, total, answers: [], completed: () => completed, faulty: false };
  const fire = o.fire ?? (async (_source: string, body: Record<string, unknown>) => {
    const r = await postScheduler(s, body);
    return { status: r.json ? r.status : -r.status, body: r.body };
  });
  const t0 = performance.now();

  const lane = async (i: number) => {
    for (let n = i; !done; n++) {
      const source = sources[n % sources.length];
      const duringFault = w.faulty;
      let answer: SchedulerAnswer;
      try {
        const r = await fire(source, { limit, source, leaseSeconds });
        answer = {
          status: Math.abs(r.status),
          json: r.status > 0,
          body: r.body,
          at: performance.now() - t0,
          duringFault: duringFault || w.faulty,
        };
      } catch (e) {
        answer = {
          status: 0,
          json: false,
          body: String(e),
          at: performance.now() - t0,
          duringFault: duringFault || w.faulty,
        };
      }
      w.answers.push(answer);
      await sleep(answer.status === 200 && answer.body?.claimed > 0 ? 100 : 400);
    }
  };
  const reaper = async () => {
    while (!done) {
      await s.sql`select public.reap_expired_backfill_leases()`.catch(() => {});
      await sleep(1_000);
    }
  };
  const progress = async () => {
    while (!done) {
      try {
        const [{ n }] = await s.sql`
          select count(*)::int as n from public.backfill_log
          where source in ${s.sql(sources)} and status = 'completed'`;
        completed = n;
        if (n === total) break;
      } catch { /* the database is down: the next read will tell */ }
      if (performance.now() - t0 > deadlineMs) break;
      await sleep(300);
    }
    done = true;
  };

  let faults = 0;
  const running = [progress(), reaper(), ...Array.from({ length: lanes }, (_, i) => lane(i))];
  try {
    faults = await o.faults(w);
  } catch (e) {
    done = true; // the fault injection itself failed: say so, not "months not completed"
    await Promise.all(running);
    throw e;
  } finally {
    w.faulty = false;
    await Promise.all(running);
  }
  const seconds = (performance.now() - t0) / 1000;

  // ---- From the database ---------------------------------------------------------------------
  const rows = await s.sql`
    select source, month::text as month, status, attempts, max_attempts, completed_at, result
    from public.backfill_log where source in ${s.sql(sources)} order by source, month`;
  assert.equal(rows.length, total);
  const notCompleted = rows.filter((r) => r.status !== "completed");
  if (notCompleted.length) {
    const statuses: Record<string, number> = {};
    for (const a of w.answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
    console.error(
      `${o.name}: scheduler answers ${JSON.stringify(statuses)}; last: ` +
        JSON.stringify(
          w.answers.slice(-3).map((a) => ({ ...a, body: JSON.stringify(a.body).slice(0, 200) })),
        ),
    );
  }
  assert.equal(
    notCompleted.length,
    0,
    `${o.name}: ${notCompleted.length}/${total} months not completed after ${
      seconds.toFixed(0)
    } s: ` +
      JSON.stringify(notCompleted.slice(0, 5)),
  );
  for (const r of rows) {
    assert.ok(r.completed_at, `${r.source} ${r.month} completed without completed_at`);
    assert.ok(
      r.attempts >= 1 && r.attempts <= r.max_attempts,
      `${r.source} ${r.month} attempts ${r.attempts}`,
    );
    assert.equal(r.result?.rows, daysOfMonth(r.month).length, `${r.source} ${r.month} result`);
  }
  // Exactly-once data: each month's days exactly once.
  const written = await s.sql`
    select source, to_char(day, 'YYYY-MM-01') as month, count(*)::int as days,
           count(distinct day)::int as distinct_days
    from public.example_calendar_days where source in ${s.sql(sources)} group by 1, 2`;
  assert.equal(written.length, total, `${o.name}: months with days ${written.length}/${total}`);
  for (const d of written) {
    assert.equal(d.days, daysOfMonth(d.month).length, `${d.source} ${d.month} days`);
    assert.equal(d.distinct_days, d.days);
  }

  // ---- From the worker logs: each month completed by exactly one worker, once --------------
  const completions = (o.completions ?? ((src) => countEvents("month_completed", src)))(sources);
  const doubles = [...completions.entries()].filter(([, n]) => n > 1);
  const once = [...completions.values()].filter((n) => n === 1).length;
  assert.deepEqual(doubles, [], `${o.name}: months completed more than once`);
  // A worker killed -9 between its complete's commit and its log line takes the line with it:
  // only then may a completed month have none (the database says it is completed, once).
  const unlogged = total - once;
  if (!o.workerKilled) {
    assert.equal(unlogged, 0, `${o.name}: ${unlogged} months without a month_completed line`);
  }

  // ---- The scheduler's answers: always JSON; 5xx only because of a fault -------------------
  const notJson = w.answers.filter((a) => !a.json);
  assert.deepEqual(notJson.slice(0, 5), [], `${o.name}: scheduler answers that are not JSON`);
  const bad = w.answers.filter((a) => a.status !== 200 && !(a.status >= 500 && a.status <= 503));
  assert.deepEqual(bad.slice(0, 5), [], `${o.name}: scheduler answers neither 200 nor 5xx`);
  const lastFiveXx = Math.max(-1, ...w.answers.filter((a) => a.status !== 200).map((a) => a.at));
  const okAfter = w.answers.filter((a) => a.status === 200 && a.at > lastFiveXx).length;
  assert.ok(okAfter > 0, `${o.name}: the scheduler never answered 200 after the last 5xx`);

  const figures: Figures = {
    name: o.name,
    months: total,
    faults,
    completedOnce: once,
    doubleCompletions: doubles.length,
    lost: total - rows.filter((r) => r.status === "completed").length,
    retried: rows.filter((r) => r.attempts > 1).length,
    maxAttempts: Math.max(...rows.map((r) => r.attempts)),
    schedulerCalls: w.answers.length,
    answers5xx: w.answers.filter((a) => a.status >= 500).length,
    seconds: Number(seconds.toFixed(1)),
  };
  console.log(
    `FIGURES ${o.name}: months=${figures.months} faults_injected=${figures.faults} ` +
      `completed_once=${
        figures.months - figures.lost
      } logged_completions=${figures.completedOnce} double_completions=${figures.doubleCompletions} ` +
      `lost=${figures.lost} retried_months=${figures.retried} max_attempts_seen=${figures.maxAttempts} ` +
      `scheduler_calls=${figures.schedulerCalls} scheduler_5xx=${figures.answers5xx} seconds=${figures.seconds}`,
  );
  return figures;
}

/**
 * Per `source month`, the claims the scheduler's answers report that were not released
 * (dispatched, or kept by a worker that had started): what `attempts` must count.
 */
export function countedClaims(w: Workload): Map<string, number> {
  const counted = new Map<string, number>();
  for (const a of w.answers) {
    for (const c of a.body?.claims ?? []) {
      if (c.outcome === "released") continue;
      const key = `${c.source} ${c.month}`;
      counted.set(key, (counted.get(key) ?? 0) + 1);
    }
  }
  return counted;
}

/** Waits until at least `fraction` of the workload is completed (so faults hit a running one). */
export async function untilProgress(w: Workload, fraction: number, timeoutMs = 60_000) {
  const deadline = performance.now() + timeoutMs;
  while (w.completed() < w.total * fraction) {
    if (performance.now() > deadline) {
      throw new Error(`workload stuck at ${w.completed()}/${w.total}`);
    }
    await sleep(100);
  }
}

/** Months of the workload in flight right now (processing), from the database. */
export async function inFlight(s: FaultStack, w: Workload): Promise<number> {
  const [{ n }] = await s.sql`
    select count(*)::int as n from public.backfill_log
    where source in ${s.sql(w.sources)} and status = 'processing'`;
  return n;
}
