// Invariant 1 (Exclusive) under load, and invariant 5 (Pooler-safe): many concurrent
// claimers, each on its own connection, claim and complete (separate transactions) until
// nothing is left; every month is claimed and completed exactly once, on its first attempt.

import assert from "node:assert/strict";
import { connect, removeSource, uniqueSource } from "./_support/db.ts";
import { backfillClient, fromPostgres } from "../functions/_shared/backfill_client.ts";

const MONTHS = 2000; // 1860-01 … 2026-08

async function claimEveryMonthOnce(workers: number, pooler: boolean) {
  const admin = connect();
  const source = uniqueSource();
  const pools = Array.from({ length: workers }, () => connect({ pooler, max: 1 }));
  try {
    assert.equal(
      await backfillClient(fromPostgres(admin)).enqueue({
        source,
        from: "1860-01-01",
        to: "2026-08-01",
      }),
      MONTHS,
    );
    // Open every connection before the race starts.
    await Promise.all(pools.map((sql) => sql`select 1`));

    let emptyClaims = 0;
    const started = performance.now();
    const claimed = await Promise.all(pools.map(async (sql, w) => {
      const client = backfillClient(fromPostgres(sql));
      const mine: { month: string; attempt: number; completed: boolean }[] = [];
      while (true) {
        const limit = 1 + Math.floor(Math.random() * 5);
        const claims = await client.claim({ limit, source, workerId: `w${w}` });
        if (claims.length === 0) {
          // Done only when nothing is left to take, not merely when this claim came back empty.
          if ((await client.peek({ source, limit: 1 })).length === 0) return mine;
          emptyClaims++;
          continue;
        }
        assert.ok(claims.length <= limit);
        for (const c of claims) {
          mine.push({
            month: c.month,
            attempt: c.attempt,
            completed: await client.complete(c.claimToken),
          });
        }
      }
    }));
    const seconds = (performance.now() - started) / 1000;

    const all = claimed.flat();
    const seen = new Map<string, number>();
    for (const { month } of all) seen.set(month, (seen.get(month) ?? 0) + 1);
    const duplicates = [...seen.values()].filter((n) => n > 1).length;
    console.log(JSON.stringify({
      test: "claim_concurrency",
      via: pooler ? "pgbouncer" : "direct",
      months: MONTHS,
      workers,
      claims: all.length,
      duplicates,
      busiestWorker: Math.max(...claimed.map((c) => c.length)),
      idleWorkers: claimed.filter((c) => c.length === 0).length,
      emptyClaimsWithWorkLeft: emptyClaims,
      seconds: Number(seconds.toFixed(2)),
      claimsPerSecond: Math.round(all.length / seconds),
    }));

    assert.equal(duplicates, 0, "a month was claimed twice");
    assert.equal(all.length, MONTHS);
    assert.equal(seen.size, MONTHS);
    assert.ok(all.every((c) => c.attempt === 1), "a first claim reported attempt > 1");
    assert.ok(all.every((c) => c.completed), "a complete of a held claim returned false");
    const [row] = await admin`
      select count(*)::int as rows,
             count(*) filter (where status = 'completed')::int as completed,
             count(*) filter (where attempts <> 1)::int as not_one_attempt,
             count(distinct claim_token)::int as tokens
      from public.backfill_log where source = ${source}`;
    assert.deepEqual(row, { rows: MONTHS, completed: MONTHS, not_one_attempt: 0, tokens: MONTHS });
  } finally {
    await Promise.all(pools.map((sql) => sql.end({ timeout: 5 })));
    await removeSource(admin, source);
    await admin.end();
  }
}

Deno.test("32 concurrent claimers over 2000 months claim and complete each month exactly once", () =>
  claimEveryMonthOnce(32, false));

// Invariant 5: the same through PgBouncer in transaction mode, where 64 clients share fewer
// server connections and no statement may be prepared (POOLER_URL).
Deno.test(
  "64 concurrent claimers through PgBouncer (transaction mode, prepare: false) claim and complete each month exactly once",
  () => claimEveryMonthOnce(64, true),
);
