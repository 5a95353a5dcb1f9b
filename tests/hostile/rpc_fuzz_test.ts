// Every RPC of the API through the gateway (as PostgREST would run it, as service_role) under
// seeded generated arguments: nulls, extremes, wrong types, unknown names, real live and
// stale tokens. Each call either succeeds, or is refused with 22023 (a bad argument, named),
// or, only for a value its parameter's type cannot hold, with the 4xx PostgREST itself gives
// (22P02 and the other cast errors, PGRST202 for unknown argument names); never an internal
// error (XX000, any 5xx) or a constraint violation (23xxx). The anon and publishable keys get
// 42501 on every one. After each round the table's invariants are checked.

import assert from "node:assert/strict";
import { RPCS } from "../../functions/_shared/backfill_client.ts";
import { faultStack } from "../faults/_stack.ts";
import { deep, type Rng, rng, seedFromEnv } from "./_prng.ts";

const ROUNDS = 25;
const CALLS_PER_RPC = 5;
/** What Postgres says when a text value cannot be cast to the parameter's type. */
const CAST_ERRORS = new Set(["22P02", "22003", "22007", "22008", "22021", "22P05"]);

type Gen = { value: unknown; typed: boolean };

function valueFor(r: Rng, type: string, tokens: string[]): Gen {
  if (r.chance(0.12)) return { value: null, typed: true };
  const wrong = r.chance(0.2);
  switch (type) {
    case "integer":
      return wrong
        ? {
          value: r.pick([
            "abc",
            1.5,
            2147483648,
            -2147483649,
            1e20,
            true,
            {},
            [1],
            "",
            "1e3",
            "0x10",
          ]),
          typed: false,
        }
        : {
          value: r.pick([
            0,
            1,
            -1,
            2,
            5,
            100,
            101,
            1000,
            1001,
            86400,
            86401,
            10,
            9,
            2147483647,
            -2147483648,
          ]),
          typed: true,
        };
    case "text":
      return wrong ? { value: r.pick(["\u0000", `a\u0000b`, "\ud800"]), typed: false } : {
        value: r.pick([
          "",
          "calendar:x",
          r.string(40),
          r.string(250),
          "x".repeat(10_000),
          "'; drop table backfill_log; --",
          12,
          true,
        ]),
        typed: true,
      };
    case "date":
      return wrong
        ? {
          value: r.pick([
            "2020-02-30",
            "2020-13-01",
            "abc",
            5,
            true,
            "294277-01-01",
            "",
            "2020-01-01T25:00",
          ]),
          typed: false,
        }
        : {
          value: r.pick([
            "2020-01-15",
            "2020-01-01",
            "0001-01-01",
            "9999-12-01",
            "infinity",
            "-infinity",
            "1970-01-01",
            "4713-01-01 BC",
            "2019-12-31",
            "2030-06-30",
          ]),
          typed: true,
        };
    case "uuid":
      return wrong
        ? {
          value: r.pick(["not-a-uuid", 1, "", "00000000-0000-0000-0000-00000000000g"]),
          typed: false,
        }
        : {
          value: r.chance(0.5) && tokens.length ? r.pick(tokens) : crypto.randomUUID(),
          typed: true,
        };
    case "boolean":
      return wrong
        ? { value: r.pick(["maybe", 2, "", []]), typed: false }
        : { value: r.pick([true, false, "t", "no"]), typed: true };
    case "uuid[]":
      return wrong ? { value: r.pick(["not-an-array", [1, 2], ["x"], {}]), typed: false } : {
        value: r.pick([
          [],
          tokens.slice(0, r.int(0, tokens.length)),
          [crypto.randomUUID(), crypto.randomUUID()],
          [null],
          Array.from({ length: 1001 }, () => crypto.randomUUID()),
        ]),
        typed: true,
      };
    case "jsonb[]":
      return wrong ? { value: r.pick(["not-an-array", 5]), typed: false } : {
        value: r.pick([[], [{ rows: 1 }], [null, 1, "s"], [{ a: 1 }, { b: 2 }, { c: 3 }]]),
        typed: true,
      };
    case "jsonb":
      return {
        value: r.pick([{ rows: 1 }, [], "s", 1, deep(r.int(1, 200)), { big: "x".repeat(50_000) }, {
          nested: [[[null]]],
        }]),
        typed: true,
      };
  }
  throw new Error(type);
}

Deno.test({
  name:
    `hostile: every RPC under ${ROUNDS} rounds of generated arguments: success, 22023 or a cast 4xx; never 5xx or 23xxx; invariants hold`,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = await faultStack();
    const seed = seedFromEnv();
    console.log(`  rpc fuzz seed ${seed} (FUZZ_SEED=${seed} to repeat)`);
    const r = rng(seed);
    const source = `calendar:f-rpc-${crypto.randomUUID()}`;
    await s.client.enqueue({ source, from: "2000-01-01", to: "2001-12-01" });
    const call = async (fn: string, args: Record<string, unknown>, key = s.secretKey) => {
      const res = await fetch(`${s.apiUrl}/rest/v1/rpc/${fn}`, {
        method: "POST",
        headers: {
          apikey: key,
          authorization: `Bearer ${key}`,
          "content-type": "application/json",
        },
        body: JSON.stringify(args),
      });
      return { status: res.status, body: await res.json() };
    };
    // Arguments without a default: leaving one out is PostgREST's PGRST202 (no such signature).
    const required = new Map<string, string[]>();
    for (
      const row of await s.sql`
      select p.proname, (p.proargnames)[1:p.pronargs - p.pronargdefaults] as names
      from pg_catalog.pg_proc p where p.pronamespace = 'public'::regnamespace`
    ) {
      required.set(row.proname, row.names ?? []);
    }
    const outcomes: Record<string, number> = {};
    const bad: string[] = [];
    let calls = 0;
    for (let round = 0; round < ROUNDS; round++) {
      // Live and stale tokens for the token-taking RPCs to hit.
      const claims = await s.client.claim({ limit: 3, source, leaseSeconds: 30 });
      const tokens = claims.map((c) => c.claimToken);
      for (const rpc of Object.values(RPCS)) {
        for (let i = 0; i < CALLS_PER_RPC; i++) {
          const args: Record<string, unknown> = {};
          let typed = true;
          for (const [, name, type] of rpc.args) {
            if (r.chance(0.25)) continue;
            const g = valueFor(r, type, tokens);
            args[name] = g.value;
            typed &&= g.typed;
          }
          let unknown = r.chance(0.08);
          if (unknown) args[r.pick(["p_nope", "limit", "p_LIMIT", "p_source; select 1"])] = 1;
          unknown ||= (required.get(rpc.fn) ?? []).some((name) => !(name in args));
          const { status, body } = await call(rpc.fn, args);
          calls++;
          const code: string = status === 200 ? "200" : String(body?.code);
          outcomes[code] = (outcomes[code] ?? 0) + 1;
          const ok = status === 200 ||
            (status === 400 && code === "22023" && !unknown) ||
            (status === 400 && CAST_ERRORS.has(code) && !typed && !unknown) ||
            (status === 404 && code === "PGRST202" && unknown);
          if (!ok) {
            bad.push(
              `${rpc.fn}(${JSON.stringify(args).slice(0, 300)}): ${status} ${
                JSON.stringify(body).slice(0, 300)
              }`,
            );
          }
        }
      }
      const [inv] = await s.sql`
        select
          (select count(*)::int from public.backfill_log
            where status = 'processing' and (claim_token is null or lease_expires_at is null)) as processing_without_claim,
          (select (count(*) - count(distinct claim_token))::int from public.backfill_log
            where claim_token is not null) as shared_tokens,
          (select count(*)::int from public.backfill_log where attempts > max_attempts) as over_max_attempts,
          (select count(*)::int from public.backfill_log
            where status = 'completed' and completed_at is null) as completed_without_completed_at,
          (select count(*)::int from public.backfill_log
            where status <> 'processing' and lease_expires_at is not null) as lease_without_claim`;
      assert.deepEqual({ ...inv }, {
        processing_without_claim: 0,
        shared_tokens: 0,
        over_max_attempts: 0,
        completed_without_completed_at: 0,
        lease_without_claim: 0,
      }, `round ${round}`);
    }
    // Wrong role: 42501 on every function, for both public keys.
    let denied = 0;
    for (const rpc of Object.values(RPCS)) {
      for (const key of [s.anonKey, s.publishableKey]) {
        const valid: Record<string, unknown> = {
          integer: 10,
          text: "calendar:x",
          date: "2020-01-01",
          uuid: crypto.randomUUID(),
          boolean: true,
          jsonb: {},
          "uuid[]": [],
          "jsonb[]": [],
        };
        const args = Object.fromEntries(rpc.args.map(([, name, type]) => [name, valid[type]]));
        const { body } = await call(rpc.fn, args, key);
        assert.equal(body?.code, "42501", `${rpc.fn} as anon: ${JSON.stringify(body)}`);
        denied++;
      }
    }
    console.log(
      `FIGURES rpc fuzz: seed=${seed} rounds=${ROUNDS} calls=${calls} outcomes=${
        JSON.stringify(outcomes)
      } ` +
        `not_allowed=${bad.length} invariant_checks=${ROUNDS}x5 wrong_role_42501=${denied}`,
    );
    assert.deepEqual(
      bad.slice(0, 10),
      [],
      `seed ${seed}: ${bad.length} calls outside the contract`,
    );
    await s.sql`delete from public.backfill_log where source = ${source}`;
  },
});
