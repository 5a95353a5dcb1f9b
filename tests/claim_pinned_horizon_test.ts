// Invariant 7 (Fast at scale) where Postgres queues usually collapse: while another
// session pins the MVCC horizon (a long report, a lagging replica), no dead index entry
// can be cleaned, and a claim that walks the claim order from its head reads every one
// of them. The claim cursor makes the claim start past them. Measured in pages read
// (EXPLAIN's buffer counts of the claim's own statement, via auto_explain), not in time.

import assert from "node:assert/strict";
import { connect, open, removeSource, type Sql, uniqueSource } from "./_support/db.ts";
import { backfillClient, fromPostgres } from "../functions/_shared/backfill_client.ts";

type PlanNode = { "Shared Hit Blocks"?: number; "Shared Read Blocks"?: number };
type Explained = { "Query Text": string; Plan: PlanNode };

/**
 * Pages the claim's statement read in one real all-sources claim. The once-a-second walk
 * from the top is put off for it (as if one had just run), so the claim follows the cursor.
 */
async function pagesReadByOneClaim(): Promise<number> {
  const plans: Explained[] = [];
  const sql = connect({
    onnotice: (notice) => {
      const message = String(notice.message ?? "");
      if (message.includes("plan:")) plans.push(JSON.parse(message.slice(message.indexOf("{"))));
    },
  });
  try {
    await sql.begin(async (tx) => {
      await tx`load 'auto_explain'`;
      await tx`set local auto_explain.log_min_duration = 0`;
      await tx`set local auto_explain.log_analyze = on`;
      await tx`set local auto_explain.log_buffers = on`;
      await tx`set local auto_explain.log_nested_statements = on`;
      await tx`set local auto_explain.log_format = 'json'`;
      await tx`set local client_min_messages = log`;
      await tx`select setval('backfill_internal.claim_cursor_checked_ms',
                             (extract(epoch from clock_timestamp()) * 1000)::bigint)`;
      const claims = await backfillClient(fromPostgres(tx)).claim({});
      assert.equal(claims.length, 1);
    });
  } finally {
    await sql.end();
  }
  const [claim] = plans.filter((p) => p["Query Text"].includes("with picked as"));
  assert.ok(claim, "the claim's statement was not explained");
  return (claim.Plan["Shared Hit Blocks"] ?? 0) + (claim.Plan["Shared Read Blocks"] ?? 0);
}

Deno.test("under a pinned MVCC horizon, a claim after 2000 claims reads about as much as the first", async () => {
  const db = open();
  const source = uniqueSource();
  const pin: Sql = connect();
  const reserved = await pin.reserve();
  try {
    // Ahead of anything else in the queue, so the all-sources claims take these months;
    // stored in random order, so that neighbours in the claim order sit on different
    // heap pages and every dead entry walked over shows as a page read.
    await db.sql`
      insert into public.backfill_log (source, month, priority)
      select ${source}, (date '1700-01-01' + make_interval(months => m))::date, 1000000
      from generate_series(0, 2999) m order by random()`;
    await db.sql`select backfill_internal.reset_claim_cursor()`;
    await reserved`begin isolation level repeatable read`;
    await reserved`select count(*) from public.backfill_log`;

    for (let i = 0; i < 10; i++) await db.client.claim({});
    const atStart = await pagesReadByOneClaim();
    for (let i = 0; i < 2000; i++) await db.client.claim({});
    const after2000 = await pagesReadByOneClaim();
    // The same claim without the cursor: from the top, over every dead entry.
    await db.sql`select backfill_internal.reset_claim_cursor()`;
    const fromTheTop = await pagesReadByOneClaim();

    console.log(
      JSON.stringify({
        test: "claim_pinned_horizon",
        claims: 2012,
        atStart,
        after2000,
        fromTheTop,
      }),
    );
    assert.ok(after2000 <= atStart * 3 + 30, `pages read grew from ${atStart} to ${after2000}`);
    assert.ok(
      fromTheTop > after2000 * 5,
      `a walk from the top read ${fromTheTop} pages, the cursor's ${after2000}: the test cannot see the difference`,
    );
  } finally {
    await reserved`rollback`;
    reserved.release();
    await pin.end();
    await removeSource(db.sql, source);
    await db.close();
  }
});
