// Faults: a process of the pipeline dies.
// - The served worker killed -9 while months are in flight: their leases expire, the reaper
//   returns them, the restarted worker completes them; attempts count each claim once.
// - A scheduler killed after its claim committed and before it dispatched: the months come
//   back after their lease; none stays processing.

import assert from "node:assert/strict";
import { DENO, ensureUp, faultStack, killFunction, REPO, sleep } from "./_stack.ts";
import { countedClaims, runWorkload, untilProgress } from "./_workload.ts";

Deno.test({
  name:
    "fault: the worker killed -9 with months in flight: leases expire, reaped, completed once by the next worker; attempts = claims",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = await faultStack();
    let orphaned: { source: string; month: string }[] = [];
    const figures = await runWorkload({
      name: "worker kill -9",
      s,
      workerKilled: true,
      sourceCount: 4,
      from: "2001-01-01",
      to: "2006-12-01", // 288 months
      faults: async (w) => {
        let faults = 0;
        for (const at of [0.25, 0.6]) {
          await untilProgress(w, at);
          const pid = await killFunction("backfill-worker");
          faults++;
          // What it was working on: started (heartbeated) months still processing once the
          // calls it had already sent have landed.
          await sleep(1_000);
          const rows = await s.sql`
            select source, month::text as month from public.backfill_log
            where source in ${
            s.sql(w.sources)
          } and status = 'processing' and heartbeat_at is not null`;
          orphaned = orphaned.concat(rows.map((r) => ({ source: r.source, month: r.month })));
          console.log(
            `  worker pid ${pid} killed -9 at ${at * 100}% with ${rows.length} months in flight`,
          );
          await ensureUp(); // a new worker process
        }
        return faults;
      },
    });
    // A month orphaned by the first kill may still be waiting for its lease at the second.
    orphaned = [...new Map(orphaned.map((o) => [`${o.source} ${o.month}`, o])).values()];
    assert.ok(orphaned.length > 0, "no month was in flight when the worker died");
    // The orphaned months were claimed again (a second attempt) and completed.
    const rows = await s.sql`
      select source, month::text as month, attempts, status from public.backfill_log
      where source || ' ' || month::text in ${
      s.sql(orphaned.map((o) => `${o.source} ${o.month}`))
    }`;
    assert.equal(rows.length, orphaned.length);
    for (const r of rows) {
      assert.equal(r.status, "completed");
      assert.ok(r.attempts >= 2, `${r.source} ${r.month}: attempts ${r.attempts}`);
    }
    console.log(
      `  orphaned months=${orphaned.length} recovered=${rows.length} retried=${figures.retried}`,
    );
  },
});

Deno.test({
  name:
    "fault: the attempts of every month equal its claims not released (worker killed, database never down)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = await faultStack();
    let mismatches: string[] = [];
    let sources: string[] = [];
    let answersRef: any;
    await runWorkload({
      name: "attempts = claims",
      s,
      workerKilled: true,
      sourceCount: 2,
      from: "2010-01-01",
      to: "2014-12-01", // 120 months
      faults: async (w) => {
        sources = w.sources;
        answersRef = w;
        await untilProgress(w, 0.3);
        await killFunction("backfill-worker");
        await sleep(1_500); // dispatches meanwhile fail and are released
        await ensureUp();
        return 1;
      },
    });
    const counted = countedClaims(answersRef);
    const rows = await s.sql`
      select source, month::text as month, attempts from public.backfill_log
      where source in ${s.sql(sources)}`;
    mismatches = rows
      .filter((r) => (counted.get(`${r.source} ${r.month}`) ?? 0) !== r.attempts)
      .map((r) =>
        `${r.source} ${r.month}: attempts ${r.attempts}, claims ${
          counted.get(`${r.source} ${r.month}`)
        }`
      );
    const released = answersRef.answers.flatMap((a: any) => a.body?.claims ?? [])
      .filter((c: any) => c.outcome === "released").length;
    console.log(
      `FIGURES attempts = claims: months=${rows.length} claims_counted=${
        [...counted.values()].reduce((a, b) => a + b, 0)
      } ` +
        `released_not_counted=${released} mismatches=${mismatches.length}`,
    );
    assert.deepEqual(mismatches, []);
  },
});

Deno.test({
  name:
    "fault: a scheduler killed between its claim's commit and its dispatch: the months come back after the lease and complete once",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = await faultStack();
    let stranded: string[] = [];
    let killedAt = 0;
    const figures = await runWorkload({
      name: "scheduler killed before dispatch",
      s,
      sourceCount: 2,
      from: "2015-01-01",
      to: "2019-12-01", // 120 months
      prepare: async (sources) => {
        for (const source of sources) {
          for (let i = 0; i < 2; i++) {
            const r = await new Deno.Command(DENO, {
              args: [
                "run",
                "-A",
                "--no-prompt",
                `${REPO}/tests/faults/_dying_scheduler.ts`,
                s.apiUrl,
                s.secretKey,
                source,
                "10",
              ],
              cwd: REPO,
              stdout: "null",
              stderr: "piped",
            }).output();
            assert.equal(r.signal, "SIGKILL", new TextDecoder().decode(r.stderr));
          }
        }
        killedAt = performance.now();
        const rows = await s.sql`
          select source, month::text as month, heartbeat_at from public.backfill_log
          where source in ${s.sql(sources)} and status = 'processing'`;
        assert.equal(rows.length, 40, "each dying scheduler should have claimed 10 months");
        assert.ok(rows.every((r) => r.heartbeat_at === null), "a stranded month was started");
        stranded = rows.map((r) => `${r.source} ${r.month}`);
        console.log(
          `  4 schedulers killed after claiming: ${stranded.length} months stranded in processing`,
        );
      },
      faults: () => Promise.resolve(4),
    });
    const rows = await s.sql`
      select source, month::text as month, attempts, status from public.backfill_log
      where source || ' ' || month::text in ${s.sql(stranded)}`;
    assert.equal(rows.length, stranded.length);
    for (const r of rows) {
      assert.equal(r.status, "completed");
      assert.equal(
        r.attempts,
        2,
        `${r.source} ${r.month}: the stranded claim and the one that completed`,
      );
    }
    const recoveredAfter = (performance.now() - killedAt) / 1000;
    console.log(
      `  stranded=${stranded.length} recovered=${rows.length} (lease 10 s; all done ${
        recoveredAfter.toFixed(0)
      } s after the kills) months=${figures.months}`,
    );
  },
});
