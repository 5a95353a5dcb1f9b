// The typed client (functions/_shared/backfill_client.ts) over its transports: every method's
// happy path through postgres.js, error mapping, result checking, omitted arguments left to
// the SQL defaults, and identical results and SQLSTATEs through supabase-js (the local
// PostgREST gateway).

import assert from "node:assert/strict";
import { createClient } from "@supabase/supabase-js";
import {
  type BackfillClient,
  backfillClient,
  BackfillRpcError,
  type BackfillTransport,
  fromPostgres,
  fromSupabase,
} from "../functions/_shared/backfill_client.ts";
import { open, removeSource, sleep, type Sql, uniqueSource } from "./_support/db.ts";
import { hasStack, stack } from "./_support/stack.ts";

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

    await t.step("completeMany records each live token by position, false when stale", async () => {
      const own = uniqueSource();
      await client.enqueue({ source: own, from: "2020-01-01", to: "2020-02-01" });
      const pair = await client.claim({ source: own, limit: 2 });
      const tokens = [...pair.map((c) => c.claimToken), crypto.randomUUID()];
      const first = await client.completeMany(tokens, [{ n: 1 }, { n: 2 }, { n: 3 }]);
      assert.deepEqual(first, tokens.map((claimToken, i) => ({ claimToken, recorded: i < 2 })));
      const again = await client.completeMany(tokens.slice(0, 2));
      assert.deepEqual(again.map((r) => r.recorded), [true, true]);
      const rows = await sql`
        select result from public.backfill_log
        where claim_token in ${sql(tokens.slice(0, 2))} order by month desc`;
      assert.deepEqual(rows.map((r) => r.result), [{ n: 1 }, { n: 2 }]);
      await assert.rejects(
        client.completeMany([]),
        (e) => e instanceof BackfillRpcError && e.code === "22023",
      );
      await removeSource(sql, own);
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

// Through the local PostgREST gateway (API_URL, SECRET_KEY) and straight through Postgres
// (DB_URL): the same sequence of calls on two fresh sources gives the same results, values and
// shapes alike (tokens and timestamps aside), and errors carry the same SQLSTATE.

type Step = [call: string, result: unknown];

/** A fixed sequence of calls on a fresh `source`; what each returned, tokens and times aside. */
async function scenario(c: BackfillClient, sql: Sql, source: string): Promise<Step[]> {
  const steps: Step[] = [];
  const note = (call: string, result: unknown) => steps.push([call, result]);
  const anon = (rows: { source: string }[]) => rows.map((r) => ({ ...r, source: "<source>" }));

  note("enqueue", await c.enqueue({ source, from: "2020-01-15", to: "2020-12-01" }));
  note("enqueue again", await c.enqueue({ source, from: "2019-12-31", to: "2020-03-01" }));
  note(
    "enqueue priority",
    await c.enqueue({ source, from: "2019-06-01", to: "2019-06-30", priority: 3, maxAttempts: 2 }),
  );
  note("peek", anon(await c.peek({ source, limit: 4 })));
  const claims = await c.claim({ source, limit: 4, workerId: "x", leaseSeconds: 60 });
  note(
    "claim",
    claims.map((k) => [k.month, k.attempt, typeof k.claimToken, TIMESTAMP.test(k.leaseExpiresAt)]),
  );
  const [a, b, d, e] = claims.map((k) => k.claimToken);
  const hb = await c.heartbeat(a, 120);
  note("heartbeat", hb !== null && TIMESTAMP.test(hb));
  const [{ v }] = await sql`
    select to_jsonb(lease_expires_at) as v from public.backfill_log where claim_token = ${a}`;
  note("heartbeat prints the lease as stored", hb === v);
  note("heartbeat stale", await c.heartbeat(crypto.randomUUID()));
  note("complete", await c.complete(a, { n: 1, nested: { list: [1, "x", null, true] } }));
  note("complete again", await c.complete(a, { n: 2 }));
  note("complete stale", await c.complete(crypto.randomUUID()));
  note("complete without result", await c.complete(e));
  note("fail retryable", await c.fail(b, "boom"));
  note("fail again", await c.fail(b, "boom"));
  note("fail not retryable", await c.fail(d, "bad", false));
  const [r] = await c.claim({ source });
  note("claim one", [r.month, r.attempt]);
  note("release", await c.release(r.claimToken));
  note("release again", await c.release(r.claimToken));
  const pair = await c.claim({ source, limit: 2 });
  const batch = [...pair.map((k) => k.claimToken), crypto.randomUUID()];
  note("completeMany", (await c.completeMany(batch, [{ n: 1 }, [2], null])).map((r) => r.recorded));
  note("completeMany again", (await c.completeMany(batch.slice(0, 2))).map((r) => r.recorded));
  note("retryFailed", await c.retryFailed({ source }));
  const progress = await c.progress(source);
  note(
    "progress",
    progress.map(({ oldestDue, nextLeaseExpiry, ...counts }) => ({
      ...counts,
      source: "<source>",
      oldestDue: oldestDue !== null && TIMESTAMP.test(oldestDue),
      nextLeaseExpiry,
    })),
  );
  note("progress of nothing", await c.progress(uniqueSource()));
  note("peek after", anon(await c.peek({ source })));
  note(
    "rows",
    await sql`
    select month::text, status, attempts, max_attempts, priority, result, last_error,
           claim_token is null as no_token
    from public.backfill_log where source = ${source} order by month`,
  );
  return steps;
}

async function sqlstate(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof BackfillRpcError, `not a BackfillRpcError: ${e}`);
    return e.code;
  }
  throw new Error("the call did not fail");
}

Deno.test({
  name: "fromSupabase (gateway) and fromPostgres give identical results and the same SQLSTATEs",
  ignore: !hasStack(),
  sanitizeResources: false, // supabase-js keeps a fetch client
  fn: async (t) => {
    const s = stack();
    const supabase = (key: string) =>
      backfillClient(
        fromSupabase(createClient(s.apiUrl, key, { auth: { persistSession: false } })),
      );
    const rest = supabase(s.secretKey);
    const { sql, client: pg, close } = open();
    const [a, b] = [uniqueSource(), uniqueSource()];
    try {
      await t.step("the same calls on two fresh sources", async () => {
        const viaRest = await scenario(rest, sql, a);
        const viaPg = await scenario(pg, sql, b);
        assert.deepEqual(viaRest, viaPg);
        // And the sequence did what it should (so two equally broken transports do not pass).
        const results = Object.fromEntries(viaPg);
        assert.equal(results.enqueue, 12);
        assert.equal(results["enqueue again"], 1);
        assert.deepEqual(results.claim, [
          ["2019-06-01", 1, "string", true],
          ["2020-12-01", 1, "string", true],
          ["2020-11-01", 1, "string", true],
          ["2020-10-01", 1, "string", true],
        ]);
        assert.equal(results["heartbeat prints the lease as stored"], true);
        assert.deepEqual(
          [results.complete, results["complete again"], results["complete stale"]],
          [true, true, false],
        );
        assert.deepEqual(
          [results["fail retryable"], results["fail again"], results["fail not retryable"]],
          ["retry", null, "failed"],
        );
        assert.deepEqual([results.release, results["release again"]], [true, false]);
        assert.equal(results.retryFailed, 1);
      });

      await t.step(
        "the legacy service_role key through the gateway gives the same results",
        async () => {
          const [c, d] = [uniqueSource(), uniqueSource()];
          try {
            const viaLegacy = await scenario(supabase(s.serviceRoleKey), sql, c);
            assert.deepEqual(viaLegacy, await scenario(pg, sql, d));
          } finally {
            await removeSource(sql, c);
            await removeSource(sql, d);
          }
        },
      );

      await t.step("22023 and 22P02 alike through both", async () => {
        for (const c of [rest, pg]) {
          assert.equal(await sqlstate(c.claim({ limit: 0 })), "22023");
          assert.equal(await sqlstate(c.claim({ leaseSeconds: 86401 })), "22023");
          assert.equal(
            await sqlstate(c.enqueue({ source: a, from: "2020-02-01", to: "2020-01-01" })),
            "22023",
          );
          assert.equal(
            await sqlstate(c.enqueue({ source: "", from: "2020-01-01", to: "2020-01-01" })),
            "22023",
          );
          assert.equal(await sqlstate(c.heartbeat("not-a-uuid")), "22P02");
        }
      });

      await t.step(
        "42501 for anon: the anon and publishable keys through the gateway, role anon in SQL",
        async () => {
          for (const key of [s.anonKey, s.publishableKey]) {
            const c = supabase(key);
            assert.equal(await sqlstate(c.claim({ source: a })), "42501");
            assert.equal(await sqlstate(c.peek({ source: a })), "42501");
            assert.equal(
              await sqlstate(c.enqueue({ source: a, from: "2020-01-01", to: "2020-01-01" })),
              "42501",
            );
            assert.equal(await sqlstate(c.progress(a)), "42501");
          }
          for (const fn of ["claim", "peek", "progress"] as const) {
            // The error ends the transaction: sql.begin rejects with it, and rolls back.
            const code = await sqlstate(sql.begin(async (tx) => {
              await tx`set local role anon`;
              const asAnon = backfillClient(fromPostgres(tx));
              return await (fn === "progress" ? asAnon.progress(a) : asAnon[fn]({ source: a }));
            }));
            assert.equal(code, "42501", fn);
          }
        },
      );
    } finally {
      await removeSource(sql, a);
      await removeSource(sql, b);
      await close();
    }
  },
});
