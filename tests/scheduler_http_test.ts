// The backfill-scheduler's HTTP contract (shared/DESIGN.md, "Edge functions"): who is let in,
// which methods and bodies are refused and how, the summary it answers with, dry runs, and
// what happens to claims it cannot hand over (released, attempt not spent) and to requests
// while the database is unreachable (a JSON 503, and the function keeps answering).
//
// Against the served function through the gateway (`${FUNCTIONS_URL}/backfill-scheduler`)
// where the stack's own configuration is what is tested; in-process (createScheduler served
// on an ephemeral port) where a test must choose the worker URL or the database.

import assert from "node:assert/strict";
import { createClient } from "@supabase/supabase-js";
import postgres from "postgres";
import { acceptedKey } from "../functions/_shared/auth.ts";
import {
  type BackfillClient,
  backfillClient,
  fromPostgres,
  fromSupabase,
} from "../functions/_shared/backfill_client.ts";
import type { Env } from "../functions/_shared/project.ts";
import {
  createScheduler,
  type SchedulerConfig,
} from "../functions/backfill-scheduler/scheduler.ts";
import { open, removeSource, type Sql, uniqueSource } from "./_support/db.ts";
import {
  closedPort,
  hasStack,
  postJson,
  serve,
  type Served,
  stack,
  waitUntil,
  withLogs,
} from "./_support/stack.ts";

const KEY = "in-process-scheduler-key";
const envOf = (vars: Record<string, string>): Env => (name) => vars[name];
const served = () => `${stack().functionsUrl}/backfill-scheduler`;

/** An in-process scheduler over `client`, served on an ephemeral port. */
function serveScheduler(config: Partial<SchedulerConfig> & { client: BackfillClient }): Served {
  return serve(createScheduler({
    acceptedKey: KEY,
    workerUrl: `http://127.0.0.1:${closedPort()}`,
    workerKey: "worker-key",
    ...config,
  }));
}

async function rowsOf(sql: Sql, source: string) {
  return await sql`
    select month::text, status, attempts, claim_token, heartbeat_at, lease_expires_at, updated_at
    from public.backfill_log where source = ${source} order by month`;
}

// ---- Which key is accepted ---------------------------------------------------------------

Deno.test("acceptedKey: BACKFILL_SCHEDULER_SECRET, else SUPABASE_SECRET_KEYS.default, else SUPABASE_SERVICE_ROLE_KEY", () => {
  const all = {
    BACKFILL_SCHEDULER_SECRET: "dedicated",
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: "sb_secret_x" }),
    SUPABASE_SERVICE_ROLE_KEY: "legacy",
  };
  assert.equal(acceptedKey(envOf(all)), "dedicated");
  assert.equal(acceptedKey(envOf({ BACKFILL_SCHEDULER_SECRET: "dedicated" })), "dedicated");
  const { BACKFILL_SCHEDULER_SECRET: _, ...project } = all;
  assert.equal(acceptedKey(envOf(project)), "sb_secret_x");
  assert.equal(acceptedKey(envOf({ ...project, BACKFILL_SCHEDULER_SECRET: "" })), "sb_secret_x");
  assert.equal(
    acceptedKey(envOf({ SUPABASE_SECRET_KEYS: project.SUPABASE_SECRET_KEYS })),
    "sb_secret_x",
  );
  assert.equal(acceptedKey(envOf({ SUPABASE_SERVICE_ROLE_KEY: "legacy" })), "legacy");
  // A secret-keys value that is not JSON, has no default, or an empty one: the legacy key.
  for (
    const bad of [
      "not json",
      "{}",
      JSON.stringify({ default: "" }),
      JSON.stringify({ other: "k" }),
      "null",
    ]
  ) {
    assert.equal(
      acceptedKey(envOf({ SUPABASE_SECRET_KEYS: bad, SUPABASE_SERVICE_ROLE_KEY: "legacy" })),
      "legacy",
      bad,
    );
    assert.equal(acceptedKey(envOf({ SUPABASE_SECRET_KEYS: bad })), undefined, bad);
  }
  assert.equal(acceptedKey(envOf({})), undefined);
  assert.equal(acceptedKey(envOf({ SUPABASE_SERVICE_ROLE_KEY: "" })), undefined);
});

Deno.test("in-process: the key chosen by acceptedKey is the only one let in; no key configured lets nobody in", async (t) => {
  const { client, close } = open();
  const source = uniqueSource(); // never enqueued: every accepted call claims nothing
  const cases: [string, Record<string, string>, string, string[]][] = [
    ["legacy service role key alone", { SUPABASE_SERVICE_ROLE_KEY: "legacy" }, "legacy", ["other"]],
    [
      "secret keys over the legacy key",
      {
        SUPABASE_SECRET_KEYS: JSON.stringify({ default: "sb_secret_x" }),
        SUPABASE_SERVICE_ROLE_KEY: "legacy",
      },
      "sb_secret_x",
      ["legacy"],
    ],
    [
      "the dedicated secret over both",
      {
        BACKFILL_SCHEDULER_SECRET: "dedicated",
        SUPABASE_SECRET_KEYS: JSON.stringify({ default: "sb_secret_x" }),
        SUPABASE_SERVICE_ROLE_KEY: "legacy",
      },
      "dedicated",
      ["sb_secret_x", "legacy"],
    ],
  ];
  try {
    for (const [name, vars, good, refused] of cases) {
      await t.step(name, async () => {
        const server = serveScheduler({ client, acceptedKey: acceptedKey(envOf(vars)) });
        try {
          for (const headers of [{ apikey: good }, { authorization: `Bearer ${good}` }]) {
            const r = await postJson(server.url, { source }, headers);
            assert.equal(r.status, 200, JSON.stringify(r.body));
            assert.equal(r.body.claimed, 0);
          }
          for (const key of refused) {
            assert.equal((await postJson(server.url, { source }, { apikey: key })).status, 401);
            assert.equal(
              (await postJson(server.url, { source }, { authorization: `Bearer ${key}` })).status,
              401,
            );
          }
        } finally {
          await server.close();
        }
      });
    }
    await t.step("no key configured: even an empty or made-up key is refused", async () => {
      const server = serveScheduler({ client, acceptedKey: acceptedKey(envOf({})) });
      try {
        for (
          const headers of [{}, { apikey: "" }, { apikey: "undefined" }, {
            authorization: "Bearer x",
          }]
        ) {
          const r = await postJson(server.url, { source }, headers);
          assert.equal(r.status, 401, JSON.stringify(headers));
          assert.deepEqual(r.body, { error: "unauthorized" });
        }
      } finally {
        await server.close();
      }
    });
  } finally {
    await close();
  }
});

// ---- The served function, through the gateway -------------------------------------------

Deno.test({
  name:
    "served: 401 for no key, a wrong key, the anon/publishable/legacy keys and an empty Bearer; the secret key is accepted in apikey and in Bearer",
  ignore: !hasStack(),
  fn: async () => {
    const s = stack();
    const body = { source: uniqueSource() }; // nothing to claim
    const refused: Record<string, string>[] = [
      {},
      { apikey: "wrong" },
      { authorization: "Bearer wrong" },
      { apikey: s.anonKey },
      { authorization: `Bearer ${s.anonKey}` },
      { apikey: s.publishableKey },
      { authorization: `Bearer ${s.publishableKey}` },
      { authorization: "Bearer " },
      { authorization: "Bearer" },
      { authorization: s.secretKey }, // no "Bearer " scheme
      { authorization: `Basic ${s.secretKey}` },
      { apikey: `${s.secretKey}x` },
      { apikey: s.secretKey.slice(0, -1) },
      // The served function has SUPABASE_SECRET_KEYS: that is its one accepted key, and the
      // legacy service_role key is not (acceptedKey takes one key, not a set).
      { apikey: s.serviceRoleKey },
    ];
    for (const headers of refused) {
      const r = await postJson(served(), body, headers);
      assert.equal(r.status, 401, `${JSON.stringify(Object.keys(headers))}: ${r.status}`);
      assert.deepEqual(r.body, { error: "unauthorized" });
      assert.match(r.headers.get("content-type") ?? "", /application\/json/);
    }
    for (
      const headers of [
        { apikey: s.secretKey },
        { authorization: `Bearer ${s.secretKey}` },
        { apikey: "wrong", authorization: `Bearer ${s.secretKey}` },
        { apikey: s.secretKey, authorization: "Bearer wrong" },
      ]
    ) {
      const r = await postJson(served(), body, headers);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.claimed, 0);
    }
  },
});

Deno.test({
  name: "served: GET, PUT and DELETE get 405 with Allow: POST, with or without the key",
  ignore: !hasStack(),
  fn: async () => {
    const s = stack();
    for (const method of ["GET", "PUT", "DELETE", "PATCH"]) {
      for (const headers of [{}, { apikey: s.secretKey }]) {
        const r = await postJson(served(), { source: uniqueSource() }, headers, method);
        assert.equal(r.status, 405, method);
        assert.equal(r.headers.get("allow"), "POST", method);
        assert.deepEqual(r.body, { error: "method not allowed" });
      }
    }
  },
});

Deno.test({
  name:
    "served: 400 naming each invalid field, and for a body that is not JSON; nothing is claimed",
  ignore: !hasStack(),
  fn: async (t) => {
    const s = stack();
    const { sql, client, close } = open();
    const source = uniqueSource();
    const auth = { apikey: s.secretKey };
    try {
      await client.enqueue({ source, from: "2020-01-01", to: "2020-03-01" });
      const before = await rowsOf(sql, source);
      const cases: [Record<string, unknown>, string[]][] = [
        [{ limit: 0 }, ["limit"]],
        [{ limit: 101 }, ["limit"]],
        [{ limit: 1.5 }, ["limit"]],
        [{ limit: "5" }, ["limit"]],
        [{ limit: null }, ["limit"]],
        [{ leaseSeconds: 9 }, ["leaseSeconds"]],
        [{ leaseSeconds: 86401 }, ["leaseSeconds"]],
        [{ source: "" }, ["source"]],
        [{ source: 5 }, ["source"]],
        [{ dryRun: "yes" }, ["dryRun"]],
        [{ bogus: 1 }, ["bogus"]],
        [{ limit: 0, leaseSeconds: 9, dryRun: "yes", bogus: true }, [
          "limit",
          "leaseSeconds",
          "dryRun",
          "bogus",
        ]],
      ];
      for (const [body, fields] of cases) {
        await t.step(JSON.stringify(body), async () => {
          // `source` keeps a body that got through away from other tests' rows.
          const r = await postJson(served(), { source, ...body }, auth);
          assert.equal(r.status, 400, JSON.stringify(r.body));
          assert.equal(r.body.error, "invalid body");
          assert.deepEqual(
            r.body.fields.map((f: { field: string }) => f.field).sort(),
            [...fields].sort(),
          );
          for (const f of r.body.fields) assert.ok(typeof f.problem === "string" && f.problem);
        });
      }
      await t.step("a body that is an array or a string is refused too", async () => {
        for (const body of ["[]", '"x"', "42"]) {
          const r = await postJson(served(), body, auth);
          assert.equal(r.status, 400, body);
          assert.equal(r.body.error, "invalid body");
        }
      });
      await t.step("malformed JSON", async () => {
        for (const body of ["{", "{limit: 1}", '{"limit": 1,}']) {
          const r = await postJson(served(), body, auth);
          assert.equal(r.status, 400, body);
          assert.deepEqual(r.body, { error: "body is not valid JSON" });
        }
      });
      assert.deepEqual(await rowsOf(sql, source), before);
    } finally {
      await removeSource(sql, source);
      await close();
    }
  },
});

Deno.test({
  name: "served: 200 with the summary; each claim dispatched to the real worker and completed once",
  ignore: !hasStack(),
  fn: async () => {
    const s = stack();
    const { sql, client, close } = open();
    const source = `calendar:${uniqueSource()}`;
    try {
      assert.equal(await client.enqueue({ source, from: "2021-01-01", to: "2021-02-01" }), 2);
      const r = await postJson(served(), { source, limit: 5, leaseSeconds: 60 }, {
        authorization: `Bearer ${s.secretKey}`,
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body, {
        claimed: 2,
        dispatched: 2,
        released: 0,
        keptByWorker: 0,
        failed: 0,
        claims: [
          { source, month: "2021-02-01", attempt: 1, outcome: "dispatched" },
          { source, month: "2021-01-01", attempt: 1, outcome: "dispatched" },
        ],
      });
      await waitUntil("both months completed", async () => {
        const [p] = await client.progress(source);
        return p?.completed === 2;
      });
      const rows = await sql`
        select month::text, status, attempts, result from public.backfill_log
        where source = ${source} order by month`;
      assert.deepEqual(rows.map((x) => [x.month, x.status, x.attempts, x.result.rows]), [
        ["2021-01-01", "completed", 1, 31],
        ["2021-02-01", "completed", 1, 28],
      ]);
    } finally {
      await sql`delete from public.example_calendar_days where source = ${source}`;
      await removeSource(sql, source);
      await close();
    }
  },
});

Deno.test({
  name: "served: dryRun lists what would be claimed and changes nothing",
  ignore: !hasStack(),
  fn: async () => {
    const s = stack();
    const { sql, client, close } = open();
    const source = uniqueSource();
    try {
      await client.enqueue({ source, from: "2020-01-01", to: "2020-03-01" });
      const before = await rowsOf(sql, source);
      const r = await postJson(served(), { source, limit: 2, dryRun: true }, {
        apikey: s.secretKey,
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body, {
        dryRun: true,
        claimed: 0,
        wouldClaim: [
          { source, month: "2020-03-01", status: "pending", attempts: 0 },
          { source, month: "2020-02-01", status: "pending", attempts: 0 },
        ],
      });
      assert.deepEqual(await rowsOf(sql, source), before);
      assert.deepEqual(
        (await client.progress(source)).map((p) => [p.pending, p.processing]),
        [[3, 0]],
      );
    } finally {
      await removeSource(sql, source);
      await close();
    }
  },
});

Deno.test("in-process: 405 with Allow: POST for other methods; 400 naming each bad field; 400 for malformed JSON", async () => {
  const { client, close } = open();
  const scheduler = serveScheduler({ client });
  const source = uniqueSource();
  try {
    for (const method of ["GET", "PUT", "DELETE"]) {
      const r = await postJson(scheduler.url, { source }, { apikey: KEY }, method);
      assert.equal(r.status, 405, method);
      assert.equal(r.headers.get("allow"), "POST");
    }
    const cases: [Record<string, unknown>, string][] = [
      [{ limit: 0 }, "limit"],
      [{ limit: 101 }, "limit"],
      [{ limit: 1.5 }, "limit"],
      [{ limit: "5" }, "limit"],
      [{ leaseSeconds: 9 }, "leaseSeconds"],
      [{ leaseSeconds: 86401 }, "leaseSeconds"],
      [{ source: "" }, "source"],
      [{ dryRun: "yes" }, "dryRun"],
      [{ unknown: 1 }, "unknown"],
    ];
    for (const [body, field] of cases) {
      const r = await postJson(scheduler.url, { source, ...body }, { apikey: KEY });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.deepEqual(r.body.fields.map((f: { field: string }) => f.field), [field]);
    }
    const r = await postJson(scheduler.url, "{", { apikey: KEY });
    assert.deepEqual([r.status, r.body], [400, { error: "body is not valid JSON" }]);
    // The edges of each range are accepted.
    for (
      const body of [{ limit: 1 }, { limit: 100 }, { leaseSeconds: 10 }, { leaseSeconds: 86400 }]
    ) {
      const ok = await postJson(scheduler.url, { source, dryRun: false, ...body }, { apikey: KEY });
      assert.equal(ok.status, 200, JSON.stringify(body));
    }
  } finally {
    await scheduler.close();
    await close();
  }
});

// ---- In-process: hand-overs that fail ------------------------------------------------------

async function assertAllReleased(
  sql: Sql,
  source: string,
  body: any,
  months: number,
) {
  assert.equal(body.claimed, months, JSON.stringify(body));
  assert.equal(body.released, months, JSON.stringify(body));
  assert.equal(body.dispatched, 0);
  assert.equal(body.keptByWorker, 0);
  assert.equal(body.failed, 0);
  for (const c of body.claims) {
    assert.equal(c.outcome, "released");
    assert.equal(typeof c.error, "string");
  }
  for (const row of await rowsOf(sql, source)) {
    assert.equal(row.status, "pending", row.month);
    assert.equal(row.attempts, 0, row.month); // the attempt was not spent
    assert.equal(row.claim_token, null);
    assert.equal(row.lease_expires_at, null);
  }
}

Deno.test("in-process: the 200 summary; each claim goes to the worker URL with the worker key and the lease", async () => {
  const { sql, client, close } = open();
  const source = uniqueSource();
  const received: { auth: string | null; body: any }[] = [];
  const worker = serve(async (req) => {
    received.push({ auth: req.headers.get("authorization"), body: await req.json() });
    return new Response(JSON.stringify({ accepted: true }), { status: 202 });
  });
  const scheduler = serveScheduler({ client, workerUrl: worker.url, workerKey: "the-worker-key" });
  try {
    await client.enqueue({ source, from: "2020-01-01", to: "2020-03-01" });
    const r = await postJson(scheduler.url, { source, limit: 2, leaseSeconds: 120 }, {
      apikey: KEY,
    });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, {
      claimed: 2,
      dispatched: 2,
      released: 0,
      keptByWorker: 0,
      failed: 0,
      claims: [
        { source, month: "2020-03-01", attempt: 1, outcome: "dispatched" },
        { source, month: "2020-02-01", attempt: 1, outcome: "dispatched" },
      ],
    });
    assert.equal(received.length, 2);
    const rows = await rowsOf(sql, source);
    for (const { auth, body } of received) {
      assert.equal(auth, "Bearer the-worker-key");
      assert.deepEqual(Object.keys(body).sort(), [
        "attempt",
        "claimToken",
        "leaseExpiresAt",
        "leaseSeconds",
        "month",
        "source",
      ]);
      assert.equal(body.leaseSeconds, 120);
      const row = rows.find((x) => x.month === body.month)!;
      assert.equal(row.status, "processing");
      assert.equal(row.claim_token, body.claimToken);
    }
    assert.equal(rows.find((x) => x.month === "2020-01-01")!.status, "pending");
  } finally {
    await scheduler.close();
    await worker.close();
    await removeSource(sql, source);
    await close();
  }
});

Deno.test("in-process: a worker URL that refuses connections: every claim released, attempts back to 0, one log line each without the token", async () => {
  const { sql, client, close } = open();
  const source = uniqueSource();
  const scheduler = serveScheduler({ client, workerUrl: `http://127.0.0.1:${closedPort()}` });
  try {
    await client.enqueue({ source, from: "2020-01-01", to: "2020-04-01" });
    const { result: r, logs } = await withLogs(() =>
      postJson(scheduler.url, { source, limit: 10 }, { authorization: `Bearer ${KEY}` })
    );
    assert.equal(r.status, 200);
    await assertAllReleased(sql, source, r.body, 4);
    const released = logs.events().filter((e) => e.event === "claim_released");
    assert.equal(released.length, 4);
    for (const e of released) assert.equal(e.source, source);
    assert.ok(!logs.lines.some((l) => l.includes(KEY)), "a key was logged");
    const tokens = await sql`
      select claim_token from public.backfill_log where source = ${source}`;
    assert.ok(tokens.every((t) => t.claim_token === null));
    // The months are due again at once: the next run claims them, as attempt 1 again.
    const again = await client.claim({ source, limit: 10 });
    assert.deepEqual(again.map((c) => c.attempt), [1, 1, 1, 1]);
  } finally {
    await scheduler.close();
    await removeSource(sql, source);
    await close();
  }
});

Deno.test("in-process: a worker that does not answer within dispatchTimeoutMs: claims released, attempts 0", async () => {
  const { sql, client, close } = open();
  const source = uniqueSource();
  let hung = 0;
  const never: (() => void)[] = [];
  const worker = serve((req) => {
    hung++;
    return new Promise<Response>((resolve) => {
      const answer = () => resolve(new Response(null, { status: 202 })); // only at shutdown
      never.push(answer);
      req.signal.addEventListener("abort", answer);
    });
  });
  const scheduler = serveScheduler({ client, workerUrl: worker.url, dispatchTimeoutMs: 300 });
  try {
    await client.enqueue({ source, from: "2020-01-01", to: "2020-03-01" });
    const started = performance.now();
    const r = await postJson(scheduler.url, { source }, { apikey: KEY });
    const tookMs = performance.now() - started;
    assert.equal(r.status, 200);
    assert.equal(hung, 3);
    await assertAllReleased(sql, source, r.body, 3);
    for (const c of r.body.claims) assert.match(c.error, /time|abort/i);
    assert.ok(tookMs < 5_000, `took ${tookMs} ms`);
  } finally {
    never.forEach((answer) => answer());
    await scheduler.close();
    await worker.close();
    await removeSource(sql, source);
    await close();
  }
});

Deno.test("in-process: a worker that answers 500 (or 200, 401, anything but 202): claims released", async () => {
  const { sql, client, close } = open();
  const source = uniqueSource();
  const statuses = [500, 200, 401];
  let i = 0;
  const worker = serve(() => new Response("{}", { status: statuses[i++ % statuses.length] }));
  const scheduler = serveScheduler({ client, workerUrl: worker.url, dispatchParallelism: 1 });
  try {
    await client.enqueue({ source, from: "2020-01-01", to: "2020-03-01" });
    const r = await postJson(scheduler.url, { source }, { apikey: KEY });
    assert.equal(r.status, 200);
    await assertAllReleased(sql, source, r.body, 3);
    assert.deepEqual(
      r.body.claims.map((c: { error: string }) => c.error),
      ["worker answered 500", "worker answered 200", "worker answered 401"],
    );
  } finally {
    await scheduler.close();
    await worker.close();
    await removeSource(sql, source);
    await close();
  }
});

Deno.test("in-process: a worker that heartbeated but did not answer 202 keeps the month (kept_by_worker, attempt counted)", async () => {
  const { sql, client, close } = open();
  const source = uniqueSource();
  const worker = serve(async (req) => {
    const claim = await req.json();
    await client.heartbeat(claim.claimToken, 60); // started: the release must be refused
    return new Response("{}", { status: 503 });
  });
  const scheduler = serveScheduler({ client, workerUrl: worker.url });
  try {
    await client.enqueue({ source, from: "2020-01-01", to: "2020-01-01" });
    const r = await postJson(scheduler.url, { source }, { apikey: KEY });
    assert.equal(r.status, 200);
    assert.equal(r.body.keptByWorker, 1);
    assert.equal(r.body.released, 0);
    assert.equal(r.body.claims[0].outcome, "kept_by_worker");
    const [row] = await rowsOf(sql, source);
    assert.equal(row.status, "processing");
    assert.equal(row.attempts, 1);
    assert.ok(row.heartbeat_at);
  } finally {
    await scheduler.close();
    await worker.close();
    await removeSource(sql, source);
    await close();
  }
});

// ---- In-process: the database is unreachable -------------------------------------------

/** Both transports pointed at a port nothing listens on. */
function unreachable(): { transports: [string, BackfillClient][]; end: () => Promise<void> } {
  const port = closedPort();
  const pg = postgres(`postgresql://postgres@127.0.0.1:${port}/postgres`, {
    max: 1,
    connect_timeout: 2,
    onnotice: () => {},
  });
  return {
    transports: [
      [
        "fromSupabase",
        backfillClient(fromSupabase(createClient(`http://127.0.0.1:${port}`, KEY, {
          auth: { persistSession: false },
        }))),
      ],
      ["fromPostgres", backfillClient(fromPostgres(pg))],
    ],
    end: () => pg.end({ timeout: 1 }),
  };
}

const BODIES = [{}, { source: "t-unreachable", limit: 3 }, { dryRun: true }];

Deno.test("in-process: database unreachable (supabase-js or postgres.js) → a JSON 5xx error, no crash, and the handler keeps answering", async (t) => {
  const { transports, end } = unreachable();
  try {
    for (const [name, client] of transports) {
      await t.step(name, async () => {
        const scheduler = serveScheduler({ client });
        try {
          for (const body of BODIES) {
            const { result: r, logs } = await withLogs(() =>
              postJson(scheduler.url, body, { apikey: KEY })
            );
            assert.ok(r.status >= 500 && r.status < 600, `status ${r.status}`);
            assert.match(r.headers.get("content-type") ?? "", /application\/json/);
            assert.equal(typeof r.body, "object", `not JSON: ${r.body}`);
            assert.equal(typeof r.body.error, "string");
            assert.ok(logs.events().some((e) => e.event === "database_error"));
          }
          // Still answering, and still checking keys and bodies first.
          assert.equal((await postJson(scheduler.url, {}, { apikey: "wrong" })).status, 401);
          assert.equal((await postJson(scheduler.url, { limit: 0 }, { apikey: KEY })).status, 400);
        } finally {
          await scheduler.close();
        }
      });
    }
  } finally {
    await end();
  }
});

// database_error.ts promises 503 when the database (or PostgREST) cannot be reached, so that
// the caller retries; an unreachable host reaches it as BackfillRpcError with code "" (supabase-js:
// "TypeError: fetch failed") or "ECONNREFUSED" (postgres.js), which it classifies as 500.
Deno.test("in-process: database unreachable (supabase-js or postgres.js) → 503 'database unavailable'", async (t) => {
  const { transports, end } = unreachable();
  try {
    for (const [name, client] of transports) {
      await t.step(name, async () => {
        const scheduler = serveScheduler({ client });
        try {
          for (const body of BODIES) {
            const { result: r } = await withLogs(() =>
              postJson(scheduler.url, body, { apikey: KEY })
            );
            assert.deepEqual(
              [r.status, r.body.error],
              [503, "database unavailable"],
              JSON.stringify(r.body),
            );
          }
        } finally {
          await scheduler.close();
        }
      });
    }
  } finally {
    await end();
  }
});
