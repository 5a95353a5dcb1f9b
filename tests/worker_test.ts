// The backfill-worker (functions/backfill-worker/worker.ts), in-process over postgres.js with
// test processors: it answers 202 at once and finishes in the background; it heartbeats the
// lease while a month runs; it stops (signal aborted, nothing recorded) when its claim is taken
// over; it records processor errors as retry (with backoff) or failed; it never starts a claim
// the scheduler released first; and it refuses bad requests.

import assert from "node:assert/strict";
import {
  type BackfillClient,
  type Claim,
  type Json,
} from "../functions/_shared/backfill_client.ts";
import {
  createWorker,
  type MonthJob,
  NonRetryableError,
  type Processor,
  type Worker,
} from "../functions/backfill-worker/worker.ts";
import { open, removeSource, sleep, type Sql, uniqueSource } from "./_support/db.ts";
import { waitUntil, withLogs } from "./_support/stack.ts";

const KEY = "in-process-worker-key";

type Call = { method: string; token: string; result?: unknown; error?: unknown };

/** The client, recording every call made with a claim token and what it returned. */
function spied(client: BackfillClient): { client: BackfillClient; calls: Call[] } {
  const calls: Call[] = [];
  const record = <T>(method: string, token: string, p: Promise<T>): Promise<T> =>
    p.then(
      (result) => (calls.push({ method, token, result }), result),
      (error) => {
        calls.push({ method, token, error });
        throw error;
      },
    );
  return {
    calls,
    client: {
      ...client,
      heartbeat: (t, s) => record("heartbeat", t, client.heartbeat(t, s)),
      complete: (t, r) => record("complete", t, client.complete(t, r)),
      fail: (t, e, r) => record("fail", t, client.fail(t, e, r)),
      release: (t) => record("release", t, client.release(t)),
    },
  };
}

function workerRequest(
  body: unknown,
  headers: Record<string, string> = { apikey: KEY },
  method = "POST",
) {
  return new Request("http://worker.test/backfill-worker", {
    method,
    headers: { "content-type": "application/json", ...headers },
    body: method === "GET" ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** Posts a claim to the worker the way the scheduler does, and expects the 202. */
async function handOver(worker: Worker, claim: Claim, leaseSeconds: number) {
  const response = await worker.handle(workerRequest({ ...claim, leaseSeconds }));
  assert.equal(response.status, 202);
  assert.deepEqual(await response.json(), {
    accepted: true,
    source: claim.source,
    month: claim.month,
  });
}

async function rowOf(sql: Sql, source: string, month: string) {
  const [row] = await sql`
    select status, attempts, claim_token, result, last_error, next_attempt_at, completed_at,
           heartbeat_at, lease_expires_at
    from public.backfill_log where source = ${source} and month = ${month}`;
  return row;
}

/** One month enqueued and claimed; the test's own db, client and cleanup. */
async function oneClaim(leaseSeconds = 60, source = uniqueSource()) {
  const db = open();
  await db.client.enqueue({ source, from: "2020-05-01", to: "2020-05-01" });
  const [claim] = await db.client.claim({ source, leaseSeconds, workerId: "worker-test" });
  assert.ok(claim, "nothing was claimed");
  return {
    ...db,
    source,
    claim,
    async cleanup() {
      await removeSource(db.sql, source);
      await db.close();
    },
  };
}

Deno.test("the worker answers 202 before processing, then completes the month with the processor's result", async () => {
  const { sql, client, source, claim, cleanup } = await oneClaim();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const jobs: MonthJob[] = [];
  const worker = createWorker({
    client,
    acceptedKey: KEY,
    processorFor: () => async (job) => {
      jobs.push(job);
      await gate;
      return { rows: 31, note: "done", list: [1, null] };
    },
  });
  try {
    await handOver(worker, claim, 60); // answered while the processor still waits
    await waitUntil("the processor started", () => Promise.resolve(jobs.length === 1));
    assert.equal((await rowOf(sql, source, claim.month)).status, "processing");
    assert.ok((await rowOf(sql, source, claim.month)).heartbeat_at, "no first heartbeat");
    release();
    await worker.idle();
    const [job] = jobs;
    assert.deepEqual(
      { ...job, signal: undefined },
      { source, month: "2020-05-01", attempt: 1, claimToken: claim.claimToken, signal: undefined },
    );
    assert.equal(job.signal.aborted, false);
    const row = await rowOf(sql, source, claim.month);
    assert.equal(row.status, "completed");
    assert.equal(row.attempts, 1);
    assert.equal(row.claim_token, claim.claimToken);
    assert.deepEqual(row.result, { rows: 31, note: "done", list: [1, null] });
    assert.ok(row.completed_at);
  } finally {
    release();
    await worker.idle();
    await cleanup();
  }
});

Deno.test("heartbeats extend the lease while a slow month runs, and the month completes", async () => {
  const LEASE = 10;
  const { sql, source, claim, cleanup, client } = await oneClaim(LEASE);
  const { client: spy, calls } = spied(client);
  let running = true;
  const worker = createWorker({
    client: spy,
    acceptedKey: KEY,
    heartbeatFraction: 0.05, // every 500 ms
    processorFor: () => async () => {
      await sleep(2_000);
      return { slow: true };
    },
  });
  try {
    const samples: { heartbeat: number; lease: number }[] = [];
    await handOver(worker, claim, LEASE);
    const done = worker.idle().then(() => (running = false));
    while (running) {
      const row = await rowOf(sql, source, claim.month);
      if (row.status === "processing" && row.heartbeat_at) {
        samples.push({
          heartbeat: row.heartbeat_at.getTime(),
          lease: row.lease_expires_at.getTime(),
        });
      }
      await sleep(150);
    }
    await done;
    const heartbeats = new Set(samples.map((s) => s.heartbeat));
    assert.ok(
      heartbeats.size >= 3,
      `lease extended ${heartbeats.size} times: ${JSON.stringify(samples)}`,
    );
    for (let i = 1; i < samples.length; i++) {
      assert.ok(samples[i].lease >= samples[i - 1].lease, "the lease went backwards");
    }
    assert.ok(
      samples.at(-1)!.lease > Date.parse(claim.leaseExpiresAt) + 1_000,
      "lease not extended",
    );
    // Every beat while the month ran extended the lease (one in flight as the month is
    // completed may find it no longer processing: harmless, the work is recorded).
    const completedAt = calls.findIndex((c) => c.method === "complete");
    const beats = calls.slice(0, completedAt).filter((c) => c.method === "heartbeat");
    assert.ok(beats.length >= 4, `${beats.length} heartbeats in 2 s`);
    assert.ok(beats.every((c) => typeof c.result === "string"), JSON.stringify(beats));
    const row = await rowOf(sql, source, claim.month);
    assert.equal(row.status, "completed");
    assert.deepEqual(row.result, { slow: true });
    // No beat after the month ended.
    const count = calls.length;
    await sleep(700);
    assert.equal(calls.length, count, "heartbeats went on after completion");
  } finally {
    running = false;
    await worker.idle();
    await cleanup();
  }
});

Deno.test("a claim taken over by another worker: the first worker's heartbeat gets null, its signal aborts, its late result is never recorded", async () => {
  const LEASE = 10;
  const { sql, source, claim, cleanup, client } = await oneClaim(LEASE);
  const { client: spy, calls } = spied(client);
  let started = false;
  let abortedAfterMs: number | undefined;
  const worker = createWorker({
    client: spy,
    acceptedKey: KEY,
    heartbeatFraction: 0.05,
    processorFor: () => async ({ signal }) => {
      started = true;
      const t0 = performance.now();
      // A processor that notices the abort but returns a (late) result anyway: the worker
      // itself must not record it.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 8_000);
        signal.addEventListener("abort", () => {
          clearTimeout(timer);
          abortedAfterMs = performance.now() - t0;
          resolve();
        }, { once: true });
      });
      return { by: "first" };
    },
  });
  try {
    await handOver(worker, claim, LEASE);
    await waitUntil("the first processor started", () => Promise.resolve(started));

    // The lease runs out (forced) and a second worker claims the month, in one transaction
    // so that the first worker's heartbeat cannot extend the lease in between.
    const second = await sql.begin(async (tx) => {
      await tx`
        update public.backfill_log set lease_expires_at = now() - interval '1 second'
        where claim_token = ${claim.claimToken}`;
      const [row] = await tx`
        select claim_token, attempt from public.claim_backfill_months(
          p_limit => 1, p_worker_id => 'second', p_lease_seconds => 60, p_source => ${source})`;
      return row;
    });
    assert.ok(second, "the second worker did not get the month");
    assert.notEqual(second.claim_token, claim.claimToken);
    assert.equal(second.attempt, 2);

    await waitUntil(
      "the first processor's signal aborted",
      () => Promise.resolve(abortedAfterMs !== undefined),
      { timeoutMs: 3_000, everyMs: 50 },
    );
    assert.ok(
      calls.some((c) =>
        c.method === "heartbeat" && c.token === claim.claimToken && c.result === null
      ),
      "no heartbeat returned null",
    );
    assert.equal(await client.complete(second.claim_token, { by: "second" }), true);
    await worker.idle();

    const row = await rowOf(sql, source, claim.month);
    assert.equal(row.status, "completed");
    assert.equal(row.claim_token, second.claim_token);
    assert.deepEqual(row.result, { by: "second" });
    assert.equal(row.attempts, 2);
    // The first worker recorded nothing: no complete or fail that changed anything.
    for (const c of calls.filter((c) => c.method === "complete" || c.method === "fail")) {
      assert.ok(
        c.result === false || c.result === null,
        `first worker recorded: ${JSON.stringify(c)}`,
      );
    }
    // And a late complete with the first token is refused by the database.
    assert.equal(await client.complete(claim.claimToken, { by: "first" }), false);
    assert.equal(await client.fail(claim.claimToken, "late"), null);
    assert.deepEqual((await rowOf(sql, source, claim.month)).result, { by: "second" });
  } finally {
    await worker.idle();
    await cleanup();
  }
});

async function failingMonth(processor: Processor, source?: string) {
  const { sql, client, claim, cleanup, source: s } = await oneClaim(60, source);
  const { client: spy, calls } = spied(client);
  const worker = createWorker({ client: spy, acceptedKey: KEY, processorFor: () => processor });
  try {
    await handOver(worker, claim, 60);
    await worker.idle();
    return { row: await rowOf(sql, s, claim.month), calls, claim };
  } finally {
    await cleanup();
  }
}

Deno.test("a processor error: the month goes to retry with next_attempt_at in the future (backoff)", async () => {
  const before = Date.now();
  const { row, calls } = await failingMonth(() => Promise.reject(new Error("upstream 502")));
  assert.equal(row.status, "retry");
  assert.equal(row.attempts, 1);
  assert.equal(row.last_error, "upstream 502");
  assert.equal(row.claim_token, null);
  assert.ok(
    row.next_attempt_at.getTime() > before + 4_000,
    `next attempt at ${row.next_attempt_at}`,
  );
  const fails = calls.filter((c) => c.method === "fail");
  assert.deepEqual(fails.map((c) => c.result), ["retry"]);
  assert.equal(calls.filter((c) => c.method === "complete").length, 0);
});

Deno.test("a NonRetryableError fails the month at once", async () => {
  const { row, calls } = await failingMonth(() =>
    Promise.reject(new NonRetryableError("bad data in 2020-05"))
  );
  assert.equal(row.status, "failed");
  assert.equal(row.attempts, 1);
  assert.equal(row.last_error, "bad data in 2020-05");
  assert.deepEqual(calls.filter((c) => c.method === "fail").map((c) => c.result), ["failed"]);
});

Deno.test("a source with no processor fails at once, last_error naming the source", async () => {
  const source = `nobody-handles:${uniqueSource()}`;
  const { sql, client, claim, cleanup } = await oneClaim(60, source);
  const worker = createWorker({ client, acceptedKey: KEY, processorFor: () => undefined });
  try {
    await handOver(worker, claim, 60);
    await worker.idle();
    const row = await rowOf(sql, source, claim.month);
    assert.equal(row.status, "failed");
    assert.match(row.last_error, new RegExp(`no processor .*"${source}"`));
  } finally {
    await cleanup();
  }
});

Deno.test("a claim the scheduler released before the worker's first heartbeat is never started", async () => {
  const { sql, client, source, claim, cleanup } = await oneClaim();
  const { client: spy, calls } = spied(client);
  let called = 0;
  const worker = createWorker({
    client: spy,
    acceptedKey: KEY,
    processorFor: () => () => (called++, Promise.resolve({ ran: true } as Json)),
  });
  try {
    assert.equal(await client.release(claim.claimToken), true);
    const { logs } = await withLogs(async () => {
      await handOver(worker, claim, 60); // the hand-over arrives late
      await worker.idle();
    });
    assert.equal(called, 0, "the processor ran");
    assert.deepEqual(calls.map((c) => [c.method, c.result]), [["heartbeat", null]]);
    assert.ok(logs.events().some((e) => e.event === "claim_lost_before_start"));
    const row = await rowOf(sql, source, claim.month);
    assert.equal(row.status, "pending");
    assert.equal(row.attempts, 0);
    assert.equal(row.heartbeat_at, null);
  } finally {
    await worker.idle();
    await cleanup();
  }
});

Deno.test("the worker refuses bad requests (401, 400, 405) and starts nothing", async (t) => {
  const { sql, client, source, claim, cleanup } = await oneClaim();
  let called = 0;
  const worker = createWorker({
    client,
    acceptedKey: KEY,
    processorFor: () => () => (called++, Promise.resolve(null)),
  });
  const good = { ...claim, leaseSeconds: 60 };
  try {
    await t.step("401 without the key", async () => {
      for (
        const headers of [
          {},
          { apikey: "wrong" },
          { authorization: "Bearer wrong" },
          { authorization: "Bearer " },
          { authorization: KEY },
        ] as Record<string, string>[]
      ) {
        const r = await worker.handle(workerRequest(good, headers));
        assert.equal(r.status, 401, JSON.stringify(headers));
        assert.deepEqual(await r.json(), { error: "unauthorized" });
      }
    });
    await t.step("400 naming the field", async () => {
      const { source: _, ...noSource } = good;
      const cases: [unknown, string[]][] = [
        [{ ...good, month: "2020-05-15" }, ["month"]],
        [{ ...good, month: "2020-13-01" }, ["month"]],
        [{ ...good, claimToken: "not-a-uuid" }, ["claimToken"]],
        [{ ...good, attempt: 0 }, ["attempt"]],
        [{ ...good, leaseSeconds: 9 }, ["leaseSeconds"]],
        [{ ...good, extra: 1 }, ["extra"]],
        [noSource, ["source"]],
        [{}, ["attempt", "claimToken", "month", "source"]],
      ];
      for (const [body, fields] of cases) {
        const r = await worker.handle(workerRequest(body));
        assert.equal(r.status, 400, JSON.stringify(body));
        const parsed = await r.json();
        assert.deepEqual(parsed.fields.map((f: { field: string }) => f.field).sort(), fields);
      }
      const r = await worker.handle(workerRequest("{not json"));
      assert.equal(r.status, 400);
      assert.deepEqual(await r.json(), { error: "body is not valid JSON" });
    });
    await t.step("405 for GET", async () => {
      const r = await worker.handle(workerRequest(undefined, { apikey: KEY }, "GET"));
      assert.equal(r.status, 405);
      assert.equal(r.headers.get("allow"), "POST");
    });
    await worker.idle();
    assert.equal(called, 0);
    const row = await rowOf(sql, source, claim.month);
    assert.equal(row.status, "processing");
    assert.equal(row.heartbeat_at, null, "a refused request heartbeated the claim");
  } finally {
    await worker.idle();
    await cleanup();
  }
});
