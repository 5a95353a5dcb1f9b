// Invariant 7 (Fast at scale): with a quarter of a million rows, 95 % of them completed, the
// claim walks its partial claim-order index and never scans the table. The plans are the
// ones Postgres really runs inside claim_backfill_months, captured with auto_explain
// (log_nested_statements) while the claim is called; everything happens in a transaction
// that is rolled back.

import assert from "node:assert/strict";
import { connect, uniqueSource } from "./_support/db.ts";
import { backfillClient, fromPostgres } from "../functions/_shared/backfill_client.ts";

const SOURCES = 100;
const MONTHS_PER_SOURCE = 2400; // 1826-01 … 2025-12
const PENDING_PER_SOURCE = 120; // the oldest 5 %: a claim (newest first) finds them last

type PlanNode = {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  Plans?: PlanNode[];
};
type Explained = { "Query Text": string; Plan: PlanNode };

const nodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)];
const describe = (n: PlanNode) =>
  `${n["Node Type"]}${n["Index Name"] ? ` using ${n["Index Name"]}` : ""}${
    n["Relation Name"] ? ` on ${n["Relation Name"]}` : ""
  }`;

class Rollback extends Error {}

Deno.test("claims use the claim-order indexes and never scan backfill_log at scale", async (t) => {
  const plans: Explained[] = [];
  const sql = connect({
    onnotice: (notice) => {
      const message = String(notice.message ?? "");
      if (message.includes("plan:")) plans.push(JSON.parse(message.slice(message.indexOf("{"))));
    },
  });
  const prefix = uniqueSource();
  try {
    await sql.begin(async (tx) => {
      await tx`
        insert into public.backfill_log
          (source, month, status, attempts, claim_token, claimed_at, completed_at)
        select ${prefix} || '-' || s,
               (date '1826-01-01' + make_interval(months => m))::date,
               case when done then 'completed' else 'pending' end,
               case when done then 1 else 0 end,
               case when done then gen_random_uuid() end,
               case when done then now() end,
               case when done then now() end
        from generate_series(1, ${SOURCES}::int) s,
             generate_series(0, ${MONTHS_PER_SOURCE - 1}::int) m,
             lateral (select m >= ${PENDING_PER_SOURCE}::int as done) d`;
      await tx`analyze public.backfill_log`;
      await tx`load 'auto_explain'`;
      await tx`set local auto_explain.log_min_duration = 0`;
      await tx`set local auto_explain.log_nested_statements = on`;
      await tx`set local auto_explain.log_format = 'json'`;
      await tx`set local client_min_messages = log`;

      const client = backfillClient(fromPostgres(tx));
      // Alternating, more than 5 times: plpgsql's cached plan turns generic after 5 runs,
      // and each variant has a cached plan of its own. Both kinds of plan are checked.
      const variants = [
        { name: "all sources", args: { limit: 10 }, index: "backfill_log_claim_order_idx" },
        {
          name: "one source (p_source)",
          args: { limit: 10, source: `${prefix}-7` },
          index: "backfill_log_claim_order_by_source_idx",
        },
      ];
      for (let round = 0; round < 4; round++) {
        for (const v of variants) {
          plans.length = 0;
          const claims = await client.claim(v.args);
          assert.equal(claims.length, 10);
          const claimPlans = plans.filter((p) => p["Query Text"].includes("with picked as"));
          await t.step(`${v.name}, run ${round + 1}`, () => {
            assert.equal(claimPlans.length, 1, "the claim's statement was not explained");
            const claimNodes = nodes(claimPlans[0].Plan);
            assert.ok(
              claimNodes.some((n) =>
                n["Node Type"] === "Index Scan" && n["Index Name"] === v.index
              ),
              `no Index Scan using ${v.index}: ${claimNodes.map(describe).join(", ")}`,
            );
            for (const p of plans) {
              const seqScans = nodes(p.Plan).filter((n) =>
                n["Node Type"] === "Seq Scan" && n["Relation Name"] === "backfill_log"
              );
              assert.equal(seqScans.length, 0, `Seq Scan on backfill_log in: ${p["Query Text"]}`);
            }
          });
        }
      }
      console.log(JSON.stringify({
        test: "claim_plan",
        rows: SOURCES * MONTHS_PER_SOURCE,
        pending: SOURCES * PENDING_PER_SOURCE,
        claimCalls: 8,
      }));
      throw new Rollback();
    }).catch((e) => {
      if (!(e instanceof Rollback)) throw e;
    });
  } finally {
    // ANALYZE's row estimate in pg_class survives the rollback; make it true again.
    await sql`analyze public.backfill_log`;
    await sql.end();
  }
});
