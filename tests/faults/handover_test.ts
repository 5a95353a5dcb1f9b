// Faults at the hand-over between scheduler and worker, on the fault stack:
// - the worker URL refusing connections, answering 500, or hanging past the timeout: the
//   claims are released and no attempt is spent;
// - hand-overs in doubt (the worker got the claim, but its answer came too late; or the
//   request reached the worker only after the scheduler gave up): released or kept, never
//   processed twice at once, and in the end each month completed once with attempts = 1;
// - a worker whose lease is taken over while it still runs: its heartbeat returns null, it
//   stops, and its late complete, fail or write is refused;
// - schedulers fired at the same instant over the same months: disjoint claims.

import assert from "node:assert/strict";
import { createClient } from "@supabase/supabase-js";
import { createScheduler } from "../../functions/backfill-scheduler/scheduler.ts";
import { createWorker } from "../../functions/backfill-worker/worker.ts";
import {
  calendarProcessor,
  daysOfMonth,
} from "../../functions/backfill-worker/processors/calendar.ts";
import { captureLogs, closedPort, serve } from "../_support/stack.ts";
import { countEvents, faultStack, sleep } from "./_stack.ts";
import { enqueueSources, postScheduler, runWorkload } from "./_workload.ts";

const KEY = "handover-test-key";

async function callScheduler(handle: (r: Request) => Promise<Response>, body: unknown) {
  const r = await handle(
    new Request("http://scheduler/", {
      method: "POST",
      headers: { apikey: KEY, "content-type": "application/json" },
      body: JSON.stringify(body),
    }),
  );
  return { status: r.status, body: await r.json() };
}

Deno.test({
  name:
    "fault: worker URL refusing, answering 500, hanging past the timeout, or in doubt: released or kept, never twice, no attempt spent",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = await faultStack();
    const servedWorker = `${s.functionsUrl}/backfill-worker`;
    const hanging = serve(() => new Promise<Response>(() => {}));
    const failing = serve(() => new Response("oops", { status: 500 }));
    // In doubt: the worker gets the claim at once, its 202 comes after the timeout.
    const lateAnswer = serve(async (req) => {
      const r = await fetch(servedWorker, {
        method: "POST",
        headers: req.headers,
        body: await req.text(),
      });
      await r.body?.cancel();
      await sleep(2_500);
      return new Response(null, { status: r.status });
    });
    // In doubt: the claim reaches the worker only after the scheduler gave up (and released).
    const lateDelivery = serve(async (req) => {
      const body = await req.text();
      await sleep(2_500);
      const r = await fetch(servedWorker, { method: "POST", headers: req.headers, body });
      await r.body?.cancel();
      return new Response(null, { status: r.status });
    });
    const cases: [string, string][] = [
      ["refused", `http://127.0.0.1:${closedPort()}`],
      ["500", failing.url],
      ["hanging", hanging.url],
      ["late answer", lateAnswer.url],
      ["late delivery", lateDelivery.url],
    ];
    const outcomes: Record<string, Record<string, number>> = {};
    let workSources: string[] = [];
    try {
      const figures = await runWorkload({
        name: "worker URL faults",
        s,
        sourceCount: 5,
        from: "2020-01-01",
        to: "2023-12-01", // 5 × 48 = 240 months
        prepare: async (sources) => {
          workSources = sources;
          for (const [i, [name, url]] of cases.entries()) {
            const handle = createScheduler({
              client: s.rest,
              acceptedKey: KEY,
              workerUrl: url,
              workerKey: s.secretKey,
              dispatchTimeoutMs: 150, // shorter than a month takes (150–450 ms): in doubt mid-month
            });
            const quiet = captureLogs(); // the in-process scheduler's own log lines
            const r = await callScheduler(handle, {
              limit: 20,
              source: sources[i],
              leaseSeconds: 60,
            })
              .finally(() => quiet.restore());
            assert.equal(r.status, 200, JSON.stringify(r.body));
            assert.equal(r.body.claimed, 20);
            outcomes[name] = {};
            for (const c of r.body.claims) {
              outcomes[name][c.outcome] = (outcomes[name][c.outcome] ?? 0) + 1;
            }
            if (["refused", "500", "hanging"].includes(name)) {
              assert.equal(r.body.released, 20, `${name}: ${JSON.stringify(r.body.claims[0])}`);
            }
          }
          await sleep(3_000); // late deliveries land
          // Nothing the scheduler released spent an attempt: released months are pending again.
          const rows = await s.sql`
            select source, status, attempts, heartbeat_at is not null as started
            from public.backfill_log where source in ${s.sql(sources)} and month >= '2022-05-01'`;
          for (const r of rows) {
            if (r.status === "pending") assert.equal(r.attempts, 0);
          }
          console.log(`  hand-over outcomes: ${JSON.stringify(outcomes)}`);
        },
        faults: () => Promise.resolve(cases.length),
      });
      // Released claims spent no attempt, kept ones were the only attempt: every month ended
      // completed by its first counted claim.
      assert.equal(figures.maxAttempts, 1, "a released claim was counted as an attempt");
      // Never two at once: no month was started twice (no lease expired in this run).
      const started = countEvents("month_started", workSources);
      const twice = [...started.values()].filter((n) => n > 1).length;
      console.log(
        `  months started=${started.size} started_twice=${twice} max_attempts=${figures.maxAttempts}`,
      );
      assert.equal(twice, 0, "a month was started twice");
      assert.equal(started.size, figures.months);
    } finally {
      await Promise.all([
        hanging.close(),
        failing.close(),
        lateAnswer.close(),
        lateDelivery.close(),
      ]);
    }
  },
});

Deno.test({
  name:
    "fault: a worker whose lease is taken over while it runs: heartbeat null, it stops, its late complete/fail/write are refused",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = await faultStack();
    const supabase = createClient(s.apiUrl, s.secretKey, { auth: { persistSession: false } });
    const { sources: [source] } = await enqueueSources(s, 1, "2024-02-01", "2024-02-01");
    const [claim] = await s.client.claim({ limit: 1, source, leaseSeconds: 10, workerId: "first" });
    let aborted = false;
    const logs = captureLogs();
    const first = createWorker({
      client: s.rest,
      acceptedKey: KEY,
      heartbeatFraction: 0.05, // a beat every 500 ms
      processorFor: () => async (job) => {
        job.signal.addEventListener("abort", () => (aborted = true));
        // A slow month (the real calendar processor, 6 s).
        return await calendarProcessor(supabase, { delayMs: 4_000 })(job);
      },
    });
    let second: { claim_token: string } | undefined;
    try {
      const r = await first.handle(
        new Request("http://worker/", {
          method: "POST",
          headers: { apikey: KEY },
          body: JSON.stringify({ ...claim, leaseSeconds: 10 }),
        }),
      );
      assert.equal(r.status, 202);
      await sleep(1_000);
      // The lease runs out (forced) and a second worker takes the month, in one transaction.
      second = await s.sql.begin(async (tx) => {
        await tx`update public.backfill_log set lease_expires_at = now() - interval '1 second'
                 where claim_token = ${claim.claimToken}`;
        const [row] = await tx`select claim_token from public.claim_backfill_months(
          p_limit => 1, p_worker_id => 'second', p_lease_seconds => 60, p_source => ${source})`;
        return row as { claim_token: string };
      });
      assert.ok(second?.claim_token);
      await first.idle();
    } finally {
      logs.restore();
    }
    const events = logs.events().filter((e) => e.source === source).map((e) => e.event);
    assert.ok(aborted, "the first worker's processor was not told to stop");
    assert.deepEqual(
      events,
      ["claim_accepted", "month_started", "month_abandoned"],
      JSON.stringify(events),
    );
    // Its late calls are refused and change nothing.
    assert.equal(await s.rest.complete(claim.claimToken, { late: true }), false);
    assert.equal(await s.rest.fail(claim.claimToken, "late", true), null);
    assert.equal(await s.rest.heartbeat(claim.claimToken, 60), null);
    const { data } = await supabase.rpc("load_example_calendar_month", {
      p_claim_token: claim.claimToken,
      p_days: daysOfMonth(claim.month),
    });
    assert.equal(data, null, "the stale token wrote days");
    const [row] = await s
      .sql`select status, attempts, claim_token, claimed_by from public.backfill_log
                              where source = ${source}`;
    assert.deepEqual({ ...row }, {
      status: "processing",
      attempts: 2,
      claim_token: second!.claim_token,
      claimed_by: "second",
    });
    const [{ n }] = await s
      .sql`select count(*)::int as n from public.example_calendar_days where source = ${source}`;
    assert.equal(n, 0, "the first worker wrote days after losing its claim");
    assert.equal(await s.client.complete(second!.claim_token, { by: "second" }), true);
    console.log(
      `FIGURES lease takeover: first worker events=${
        events.join(",")
      } late_complete=false late_fail=null late_write=null days_written_by_first=0`,
    );
  },
});

Deno.test({
  name: "fault: schedulers fired at the same instant over the same months claim disjoint sets",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = await faultStack();
    const { sources: [source], total } = await enqueueSources(s, 1, "1990-01-01", "2014-12-01"); // 300
    const seen = new Map<string, number>();
    let rounds = 0;
    let overlaps = 0;
    for (; rounds < 30; rounds++) {
      const answers = await Promise.all(
        Array.from(
          { length: 4 },
          () => postScheduler(s, { limit: 5, source, leaseSeconds: 60, dryRun: false }),
        ),
      );
      const claimed = answers.flatMap((a) => {
        assert.equal(a.status, 200, JSON.stringify(a.body));
        return a.body.claims.map((c: any) => c.month as string);
      });
      if (claimed.length === 0) break;
      overlaps += claimed.length - new Set(claimed).size;
      for (const m of claimed) seen.set(m, (seen.get(m) ?? 0) + 1);
    }
    const twice = [...seen.values()].filter((n) => n > 1).length;
    console.log(
      `FIGURES cron overlap: rounds=${rounds} schedulers_per_round=4 months_claimed=${seen.size}/${total} overlaps_in_a_round=${overlaps} claimed_twice=${twice}`,
    );
    assert.equal(overlaps, 0);
    assert.equal(twice, 0);
    assert.equal(seen.size, Math.min(total, 30 * 20));
  },
});
