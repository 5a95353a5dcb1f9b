// The typed client (functions/_shared/backfill_client.ts) over its transports: every method's
// happy path through postgres.js, error mapping, result checking, omitted arguments left to
// the SQL defaults, and (once the local PostgREST gateway exists) identical results through
// supabase-js.

import assert from "node:assert/strict";
import { createClient } from "@supabase/supabase-js";
import {
  backfillClient,
  BackfillRpcError,
  type BackfillTransport,
  fromSupabase,
} from "../functions/_shared/backfill_client.ts";
import { open, removeSource, sleep, uniqueSource } from "./_support/db.ts";

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)$/;

Deno.test("fromPostgres: every method's happy path", async (t) => {
  const { sql, client, close } = open();
  const source = uniqueSource();
  try {
    await t.step(
      "enqueue normalises days to months, is idempotent, counts new months",
      async () => {
        assert.equal(await client.enqueue({ source, from: "2020-01-15", to: "2020-06-03" }), 6);
        assert.equal(await client.enqueue({ source, from: "2020-01-01", to: "2020-07-01" }), 1);
        assert.equal(
          await client.enqueue({ source, from: "2019-12-01", to: "2019-12-01", priority: 5 }),
          1,
        );
        const [row] = await sql`
        select priority, max_attempts from public.backfill_log
        where source = ${source} and month = '2019-12-01'`;
        assert.deepEqual(row, { priority: 5, max_attempts: 5 }); // SQL default for max_attempts
      },
    );

    await t.step("peek shows the claim order and takes nothing", async () => {
      const rows = await client.peek({ source, limit: 3 });
      assert.deepEqual(rows, [
        { source, month: "2019-12-01", status: "pending", attempts: 0 },
        { source, month: "2020-07-01", status: "pending", attempts: 0 },
        { source, month: "2020-06-01", status: "pending", attempts: 0 },
      ]);
      assert.equal((await client.peek({ source })).length, 8); // p_limit default 10
      assert.equal((await client.progress(source))[0].pending, 8);
    });

    const claims = await client.claim({ source, limit: 3, workerId: "w-1", leaseSeconds: 60 });
    await t.step("claim returns typed claims in claim order", async () => {
      assert.deepEqual(claims.map((c) => c.month), ["2019-12-01", "2020-07-01", "2020-06-01"]);
      for (const c of claims) {
        assert.equal(c.source, source);
        assert.match(c.month, DATE);
        assert.equal(c.attempt, 1);
        assert.match(c.claimToken, /^[0-9a-f-]{36}$/);
        assert.match(c.leaseExpiresAt, TIMESTAMP);
        const inSeconds = (Date.parse(c.leaseExpiresAt) - Date.now()) / 1000;
        assert.ok(inSeconds > 50 && inSeconds <= 61, `lease in ${inSeconds}s`);
      }
      const [row] = await sql`
        select claimed_by from public.backfill_log where claim_token = ${claims[0].claimToken}`;
      assert.equal(row.claimed_by, "w-1");
      const [one] = await client.claim({ source }); // p_limit default 1
      assert.equal(one.month, "2020-05-01");
      assert.equal(await client.release(one.claimToken), true);
    });

    await t.step("heartbeat extends a held lease, null for a token not held", async () => {
      const extended = await client.heartbeat(claims[0].claimToken, 600);
      assert.ok(extended !== null);
      assert.match(extended, TIMESTAMP);
      assert.ok(Date.parse(extended) > Date.parse(claims[0].leaseExpiresAt));
      const byDefault = await client.heartbeat(claims[0].claimToken); // 900 s
      assert.ok(byDefault !== null && Date.parse(byDefault) > Date.parse(extended));
      assert.equal(await client.heartbeat(crypto.randomUUID()), null);
    });

    await t.step("complete records the result, again true, stale false", async () => {
      const token = claims[0].claimToken;
      assert.equal(await client.complete(token, { rows: 3, note: "ok", list: [1, null] }), true);
      assert.equal(await client.complete(token, { rows: 4 }), true);
      assert.equal(await client.complete(crypto.randomUUID()), false);
      const [row] = await sql`
        select status, result from public.backfill_log where claim_token = ${token}`;
      assert.deepEqual(row, {
        status: "completed",
        result: { rows: 3, note: "ok", list: [1, null] },
      });
      const [noResult] = await client.claim({ source });
      assert.equal(await client.complete(noResult.claimToken), true);
      const [r2] = await sql`
        select result from public.backfill_log where claim_token = ${noResult.claimToken}`;
      assert.equal(r2.result, null);
    });

    await t.step("fail: retry, then failed when not retryable, null when stale", async () => {
      assert.equal(await client.fail(claims[1].claimToken, "boom"), "retry");
      assert.equal(await client.fail(claims[1].claimToken, "boom"), null);
      assert.equal(await client.fail(claims[2].claimToken, "bad data", false), "failed");
    });

    await t.step("release hands a claim back, false when stale", async () => {
      const [c] = await client.claim({ source });
      assert.equal(await client.release(c.claimToken), true);
      assert.equal(await client.release(c.claimToken), false);
      const [row] = await sql`
        select status, attempts from public.backfill_log
        where source = ${source} and month = ${c.month}`;
      assert.deepEqual(row, { status: "pending", attempts: 0 });
    });

    await t.step("retryFailed re-queues failed months", async () => {
      assert.equal(await client.retryFailed({ source, from: "2021-01-01" }), 0);
      assert.equal(await client.retryFailed({ source, from: "2020-01-01", to: "2020-12-31" }), 1);
      assert.equal(await client.retryFailed({ source }), 0);
    });

    await t.step("reapExpiredLeases recovers an expired lease", async () => {
      const [c] = await client.claim({ source, leaseSeconds: 1 });
      await sleep(1100);
      assert.ok(await client.reapExpiredLeases() >= 1);
      assert.equal(await client.heartbeat(c.claimToken), null);
      const [row] = await sql`
        select status, attempts from public.backfill_log
        where source = ${source} and month = ${c.month}`;
      assert.deepEqual(row, { status: "retry", attempts: 1 });
    });

    await t.step("progress counts each status of the source", async () => {
      const rows = await client.progress(source);
      assert.equal(rows.length, 1);
      const { oldestDue, nextLeaseExpiry, ...counts } = rows[0];
      assert.deepEqual(counts, {
        source,
        total: 8,
        pending: 4,
        processing: 0,
        retry: 2, // the failed retry (in backoff) and the reaped lease
        completed: 2,
        failed: 0,
      });
      assert.match(oldestDue ?? "", TIMESTAMP);
      assert.equal(nextLeaseExpiry, null);
      assert.ok((await client.progress()).some((r) => r.source === source));
      assert.deepEqual(await client.progress(uniqueSource()), []);
    });
  } finally {
    await removeSource(sql, source);
    await close();
  }
});

Deno.test("fromPostgres: errors become BackfillRpcError with the SQLSTATE", async () => {
  const { client, close } = open();
  try {
    const rejects = (p: Promise<unknown>, code: string, message: RegExp) =>
      assert.rejects(p, (e: unknown) => {
        assert.ok(e instanceof BackfillRpcError, `not a BackfillRpcError: ${e}`);
        assert.equal(e.code, code);
        assert.match(e.message, message);
        return true;
      });
    await rejects(client.claim({ limit: 0 }), "22023", /p_limit/);
    await rejects(client.claim({ leaseSeconds: 86401 }), "22023", /p_lease_seconds/);
    await rejects(
      client.enqueue({ source: uniqueSource(), from: "2020-02-01", to: "2020-01-01" }),
      "22023",
      /p_from/,
    );
    await rejects(client.heartbeat("not-a-uuid"), "22P02", /uuid/);
  } finally {
    await close();
  }
});

Deno.test("the client leaves omitted arguments to the SQL defaults", async () => {
  const calls: [string, Record<string, unknown>][] = [];
  const recorder: BackfillTransport = {
    call: (fn, args) => {
      calls.push([fn, args]);
      return Promise.resolve(fn === "claim_backfill_months" ? [] : 0);
    },
  };
  const client = backfillClient(recorder);
  await client.claim();
  await client.claim({ limit: 3, source: "s" });
  await client.enqueue({ source: "s", from: "2020-01-01", to: "2020-02-01", maxAttempts: 9 });
  await client.reapExpiredLeases();
  assert.deepEqual(calls, [
    ["claim_backfill_months", {}],
    ["claim_backfill_months", { p_limit: 3, p_source: "s" }],
    ["enqueue_backfill_months", {
      p_source: "s",
      p_from: "2020-01-01",
      p_to: "2020-02-01",
      p_max_attempts: 9,
    }],
    ["reap_expired_backfill_leases", {}],
  ]);
});

Deno.test("a result of the wrong shape throws a clear error", async () => {
  const lying = (value: unknown) => backfillClient({ call: () => Promise.resolve(value) });
  await assert.rejects(
    lying([{ source: "s", month: "2020-01" }]).claim(),
    /claim_backfill_months returned a result of the wrong shape/,
  );
  await assert.rejects(lying("yes").complete(crypto.randomUUID()), /wrong shape/);
  await assert.rejects(lying("maybe").fail(crypto.randomUUID(), "e"), /wrong shape/);
  await assert.rejects(lying(null).enqueue({ source: "s", from: "x", to: "y" }), /wrong shape/);
});

// Switched on when the local PostgREST gateway exists (API_URL, SERVICE_ROLE_KEY): the same
// calls through supabase-js and through postgres.js give JSON-identical results.
Deno.test({
  name: "fromSupabase and fromPostgres give the same results",
  ignore: !Deno.env.get("API_URL"),
  fn: async () => {
    const apiUrl = Deno.env.get("API_URL")!;
    const key = Deno.env.get("SERVICE_ROLE_KEY");
    assert.ok(key, "SERVICE_ROLE_KEY must be set along with API_URL");
    const rest = backfillClient(
      fromSupabase(createClient(apiUrl, key, { auth: { persistSession: false } })),
    );
    const { sql, client: pg, close } = open();
    const [a, b] = [uniqueSource(), uniqueSource()];
    try {
      assert.equal(await rest.enqueue({ source: a, from: "2020-01-15", to: "2020-12-01" }), 12);
      assert.equal(await pg.enqueue({ source: b, from: "2020-01-15", to: "2020-12-01" }), 12);
      const strip = (rows: { source: string }[]) => rows.map((r) => ({ ...r, source: "" }));
      assert.deepEqual(strip(await rest.peek({ source: a })), strip(await pg.peek({ source: b })));
      assert.deepEqual(await rest.peek({ source: a }), await pg.peek({ source: a }));

      const viaRest = await rest.claim({ source: a, limit: 2, leaseSeconds: 60 });
      const viaPg = await pg.claim({ source: b, limit: 2, leaseSeconds: 60 });
      const shape = (cs: typeof viaRest) => cs.map((c) => [c.month, c.attempt]);
      assert.deepEqual(shape(viaRest), shape(viaPg));
      // Timestamps print alike: the same heartbeat read back through both transports.
      const hb = await rest.heartbeat(viaRest[0].claimToken, 60);
      const [row] = await sql`
        select to_jsonb(lease_expires_at) as v from public.backfill_log
        where claim_token = ${viaRest[0].claimToken}`;
      assert.equal(hb, row.v);
      assert.deepEqual(await rest.progress(a), await pg.progress(a));

      assert.equal(await rest.complete(viaRest[0].claimToken, { n: 1 }), true);
      assert.equal(await pg.complete(viaRest[0].claimToken, { n: 1 }), true);
      assert.equal(await rest.fail(viaRest[1].claimToken, "x", false), "failed");
      assert.equal(await rest.fail(viaRest[1].claimToken, "x"), null);
      assert.equal(await pg.release(viaPg[0].claimToken), true);
      assert.equal(await rest.release(viaPg[0].claimToken), false);
      assert.equal(await rest.heartbeat(crypto.randomUUID()), null);
      assert.equal(await rest.retryFailed({ source: a }), 1);

      for (const c of [rest, pg]) {
        await assert.rejects(c.claim({ limit: 0 }), (e: unknown) => {
          assert.ok(e instanceof BackfillRpcError);
          assert.equal(e.code, "22023");
          return true;
        });
      }
    } finally {
      await removeSource(sql, a);
      await removeSource(sql, b);
      await close();
    }
  },
});
