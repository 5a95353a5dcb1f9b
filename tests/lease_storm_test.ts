// Invariants 2 (Fenced), 3 (Counted) and 4 (Recovered) in a storm of expiring leases: 1 s
// leases, workers that often take longer than that, and a reaper running all the while.
// Each month ends completed exactly once, by the claim that held it last; every completion
// by a claim that lost its month is refused; attempts are exactly the claims made.

import assert from "node:assert/strict";
import { connect, removeSource, sleep, uniqueSource } from "./_support/db.ts";
import { backfillClient, fromPostgres } from "../functions/_shared/backfill_client.ts";

const MONTHS = 300;
const WORKERS = 16;
const LEASE_SECONDS = 1;
const MAX_WORK_MS = 1500;
const REAP_EVERY_MS = 200;
const DEADLINE_MS = 40_000; // typically done in about 22 s

Deno.test("a lease storm ends with every month completed once, by its last claim", async () => {
  const admin = connect();
  const source = uniqueSource();
  const pools = Array.from({ length: WORKERS + 1 }, () => connect({ max: 1 }));
  const [reaperSql, ...workerSqls] = pools;
  try {
    await backfillClient(fromPostgres(admin)).enqueue({
      source,
      from: "2000-01-01",
      to: "2024-12-01",
      maxAttempts: 100,
    });

    const claims: { month: string; token: string; attempt: number }[] = [];
    const completes: { month: string; token: string; ok: boolean }[] = [];
    const completedMonths = new Set<string>();
    const started = performance.now();
    const running = () =>
      completedMonths.size < MONTHS && performance.now() - started < DEADLINE_MS;

    let reaped = 0;
    const reaper = (async () => {
      const client = backfillClient(fromPostgres(reaperSql));
      while (running()) {
        reaped += await client.reapExpiredLeases();
        await sleep(REAP_EVERY_MS);
      }
    })();

    const workers = workerSqls.map(async (sql, w) => {
      const client = backfillClient(fromPostgres(sql));
      while (running()) {
        const [c] = await client.claim({ source, leaseSeconds: LEASE_SECONDS, workerId: `w${w}` });
        if (!c) {
          await sleep(50); // the rest is held by others, or waits for its lease to run out
          continue;
        }
        claims.push({ month: c.month, token: c.claimToken, attempt: c.attempt });
        await sleep(Math.random() * MAX_WORK_MS);
        const ok = await client.complete(c.claimToken, { worker: w });
        completes.push({ month: c.month, token: c.claimToken, ok });
        if (ok) completedMonths.add(c.month);
      }
    });
    await Promise.all([reaper, ...workers]);
    const seconds = (performance.now() - started) / 1000;

    const rows = await admin<
      {
        month: string;
        status: string;
        claim_token: string;
        attempts: number;
        max_attempts: number;
      }[]
    >`
      select month::text, status, claim_token::text, attempts, max_attempts
      from public.backfill_log where source = ${source} order by month`;
    const claimsOf = Map.groupBy(claims, (c) => c.month);
    const wonBy = Map.groupBy(completes.filter((c) => c.ok), (c) => c.month);
    const staleRefused = completes.filter((c) => !c.ok).length;
    console.log(JSON.stringify({
      test: "lease_storm",
      months: MONTHS,
      workers: WORKERS,
      leaseSeconds: LEASE_SECONDS,
      claims: claims.length,
      completes: completes.length,
      staleRefused,
      reapedByReaper: reaped,
      maxClaimsOfOneMonth: Math.max(...[...claimsOf.values()].map((c) => c.length)),
      seconds: Number(seconds.toFixed(2)),
    }));

    assert.equal(completedMonths.size, MONTHS, `storm did not finish within ${DEADLINE_MS} ms`);
    assert.equal(rows.length, MONTHS);
    for (const row of rows) {
      const seen = claimsOf.get(row.month) ?? [];
      const won = wonBy.get(row.month) ?? [];
      assert.equal(row.status, "completed", `${row.month} is ${row.status}`);
      assert.equal(won.length, 1, `${row.month}: ${won.length} completes returned true`);
      assert.equal(won[0].token, row.claim_token, `${row.month}: completed by another token`);
      assert.equal(seen.at(-1)?.token, row.claim_token, `${row.month}: not its last claim`);
      assert.equal(row.attempts, seen.length, `${row.month}: attempts vs claims seen`);
      assert.deepEqual(seen.map((c) => c.attempt), seen.map((_, i) => i + 1));
      assert.ok(row.attempts <= row.max_attempts);
    }
    assert.ok(staleRefused > 0, "no stale completion happened: the storm did not storm");
    assert.equal(claims.length, completes.length);
    assert.equal(staleRefused, claims.length - MONTHS);
  } finally {
    await Promise.all(pools.map((sql) => sql.end({ timeout: 5 })));
    await removeSource(admin, source);
    await admin.end();
  }
});
