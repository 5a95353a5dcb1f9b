// Invariant 1 (Exclusive), its last clause: a claimer never waits on rows another
// transaction holds; it skips them (FOR UPDATE SKIP LOCKED) and takes the next month.
// Claimer B runs with lock_timeout = 200ms: had it waited on A's row, it would fail 55P03.

import assert from "node:assert/strict";
import { connect, removeSource, type Sql, type Tx, uniqueSource } from "./_support/db.ts";
import { backfillClient, type Claim, fromPostgres } from "../functions/_shared/backfill_client.ts";

class Rollback extends Error {}

/** Runs `hold` in a transaction on `a`, then `meanwhile` while it is still open; rolls back. */
async function whileHeld<T>(
  a: Sql,
  hold: (tx: Tx) => Promise<unknown>,
  meanwhile: () => Promise<T>,
) {
  let result: T | undefined;
  await a.begin(async (tx) => {
    await hold(tx);
    result = await meanwhile();
    throw new Rollback();
  }).catch((e) => {
    if (!(e instanceof Rollback)) throw e;
  });
  return result as T;
}

/** Claimer B: one claim in its own transaction, never willing to wait more than 200 ms. */
async function claimImpatiently(b: Sql, source: string): Promise<Claim[]> {
  return await b.begin(async (tx) => {
    await tx`set local lock_timeout = '200ms'`;
    return await backfillClient(fromPostgres(tx)).claim({ limit: 1, source });
  }) as Claim[];
}

Deno.test("a claimer never waits on rows another claimer holds", async (t) => {
  const [admin, a, b] = [connect(), connect(), connect()];
  const source = uniqueSource();
  try {
    await backfillClient(fromPostgres(admin)).enqueue({
      source,
      from: "2024-01-01",
      to: "2024-03-01",
    });

    await t.step("an uncommitted claim's row is skipped", async () => {
      let held: Claim[] = [];
      const taken = await whileHeld(a, async (tx) => {
        held = await backfillClient(fromPostgres(tx)).claim({ limit: 1, source });
      }, () => claimImpatiently(b, source));
      assert.equal(held.length, 1);
      assert.equal(held[0].month, "2024-03-01");
      assert.equal(taken.length, 1);
      assert.equal(taken[0].month, "2024-02-01", "B took a different month, without waiting");
      // A rolled back: its month is still waiting; B's claim is real.
      assert.deepEqual(
        await backfillClient(fromPostgres(admin)).peek({ source }),
        [
          { source, month: "2024-03-01", status: "pending", attempts: 0 },
          { source, month: "2024-01-01", status: "pending", attempts: 0 },
        ],
      );
      assert.equal(await backfillClient(fromPostgres(admin)).release(taken[0].claimToken), true);
    });

    await t.step("a head row held FOR UPDATE by another transaction is skipped", async () => {
      const taken = await whileHeld(a, async (tx) => {
        const [head] = await tx`
          select month::text from public.backfill_log where source = ${source}
          order by priority desc, month desc limit 1 for update`;
        assert.equal(head.month, "2024-03-01");
      }, () => claimImpatiently(b, source));
      assert.equal(taken.length, 1);
      assert.equal(taken[0].month, "2024-02-01");
    });
  } finally {
    await removeSource(admin, source);
    await Promise.all([admin, a, b].map((sql) => sql.end({ timeout: 5 })));
  }
});
