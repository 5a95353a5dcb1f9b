// Who is let in, and what never leaks.
// - The served scheduler (fault stack): a wrong key, the anon or publishable key, the legacy
//   service-role key (not the accepted one), an empty Bearer, a lower-case "bearer": 401.
//   A key with a trailing newline cannot cross HTTP (a field value's surrounding whitespace
//   is not part of it), so it is checked where it could still arrive: the header check itself.
// - The compare is constant-time: with a 4 MB key, a candidate differing in its first byte
//   and one differing in its last take the same time (an early-exit compare is ~100× apart).
// - No key, claim token, Vault secret or scheduler secret appears in any log line of the
//   stack (every file in <stack>/log), in any migration, or in any error body.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { constantTimeEqual, isAuthorized } from "../../functions/_shared/auth.ts";
import { createScheduler } from "../../functions/backfill-scheduler/scheduler.ts";
import { captureLogs, closedPort } from "../_support/stack.ts";
import { faultStack, paths, REPO } from "../faults/_stack.ts";
import { postScheduler } from "../faults/_workload.ts";

Deno.test({
  name:
    "hostile auth: wrong, anon, publishable, legacy, empty-Bearer and trailing-newline keys get 401",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = await faultStack();
    const cases: [string, Record<string, string>][] = [
      ["wrong key", { apikey: "sb_secret_wrong" }],
      ["anon key", { apikey: s.anonKey }],
      ["anon key as bearer", { authorization: `Bearer ${s.anonKey}` }],
      ["publishable key", { apikey: s.publishableKey }],
      ["legacy service-role key (not the accepted one)", { apikey: s.serviceRoleKey }],
      ["empty Bearer", { authorization: "Bearer " }],
      ["Bearer alone", { authorization: "Bearer" }],
      ["lower-case bearer", { authorization: `bearer ${s.secretKey}` }],
      ["key with a literal \\n", { apikey: `${s.secretKey}\\n` }],
      ["no key", {}],
    ];
    for (const [name, headers] of cases) {
      const res = await fetch(s.schedulerUrl, { method: "POST", headers, body: "{}" });
      const body = await res.json();
      assert.equal(res.status, 401, name);
      assert.deepEqual(body, { error: "unauthorized" }, name);
    }
    // The right key in either header is let in (dry run: takes nothing).
    for (
      const headers of [{ apikey: s.secretKey }, {
        authorization: `Bearer ${s.secretKey}`,
      }] as Record<string, string>[]
    ) {
      const res = await fetch(s.schedulerUrl, {
        method: "POST",
        headers: headers as Record<string, string>,
        body: `{"dryRun":true}`,
      });
      assert.equal(res.status, 200);
      await res.body?.cancel();
    }
    // A trailing newline (or CR, tab, space) where it can still arrive: the check refuses it.
    const raw = (value: string) =>
      ({ get: (n: string) => (n === "apikey" ? value : null) }) as unknown as Headers;
    for (const tail of ["\n", "\r\n", " ", "\t", "\u0000"]) {
      assert.equal(
        await isAuthorized(raw(`${s.secretKey}${tail}`), s.secretKey),
        false,
        JSON.stringify(tail),
      );
    }
    assert.equal(await isAuthorized(raw(s.secretKey), s.secretKey), true);
    console.log(
      `FIGURES auth: refused_over_http=${cases.length} accepted_over_http=2 refused_in_process=5`,
    );
  },
});

Deno.test("hostile auth: the key compare does not short-circuit (first vs last byte differing take the same time)", async () => {
  const size = 4 * 1024 * 1024;
  const key = "k".repeat(size);
  const firstDiffers = "x" + "k".repeat(size - 1);
  const lastDiffers = "k".repeat(size - 1) + "x";
  const time = async (candidate: string) => {
    const t0 = performance.now();
    assert.equal(await constantTimeEqual(candidate, key), false);
    return performance.now() - t0;
  };
  const first: number[] = [];
  const last: number[] = [];
  for (let i = 0; i < 3; i++) await time(firstDiffers), await time(lastDiffers); // warm up
  for (let i = 0; i < 21; i++) {
    first.push(await time(firstDiffers));
    last.push(await time(lastDiffers));
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const [f, l] = [median(first), median(last)];
  const ratio = Math.max(f, l) / Math.min(f, l);
  console.log(
    `FIGURES constant-time: key=${size} B median first-byte-differs=${
      f.toFixed(3)
    } ms last-byte-differs=${l.toFixed(3)} ms ratio=${ratio.toFixed(2)}`,
  );
  assert.equal(await constantTimeEqual(key, "k".repeat(size)), true);
  // A short-circuiting compare measured a ratio of ~230 here; 3 leaves room for a noisy
  // machine without letting one through.
  assert.ok(
    ratio < 3,
    `the compare's time depends on where the keys differ (ratio ${ratio.toFixed(2)})`,
  );
});

Deno.test({
  name:
    "hostile secrets: no key, claim token, Vault secret or scheduler secret in any log line, migration or error body",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = await faultStack();
    // Error bodies of an in-process scheduler with a dedicated secret, under bad requests and
    // an unreachable database and worker.
    const SECRET = `dedicated-scheduler-secret-${crypto.randomUUID()}`;
    const logs = captureLogs();
    const bodies: string[] = [];
    try {
      const down = createScheduler({
        client: (await import("../../functions/_shared/backfill_client.ts")).backfillClient({
          call: () => Promise.reject(new Error("connect ECONNREFUSED")),
        }),
        acceptedKey: SECRET,
        workerUrl: `http://127.0.0.1:${closedPort()}`,
        workerKey: SECRET,
      });
      const up = createScheduler({
        client: s.rest,
        acceptedKey: SECRET,
        workerUrl: `http://127.0.0.1:${closedPort()}`,
        workerKey: SECRET,
      });
      for (const handle of [down, up]) {
        for (
          const [headers, body] of [
            [{ apikey: SECRET }, "{}"],
            [{ apikey: SECRET }, "{bad"],
            [{ apikey: SECRET }, '{"limit":-1}'],
            [{ apikey: `${SECRET}x` }, "{}"],
            [{ authorization: `Bearer ${SECRET.slice(1)}` }, "{}"],
            [{ apikey: SECRET }, '{"source":"calendar:none","limit":1}'],
          ] as const
        ) {
          const res = await handle(
            new Request("http://s/", {
              method: "POST",
              headers: headers as Record<string, string>,
              body,
            }),
          );
          bodies.push(await res.text());
        }
      }
    } finally {
      logs.restore();
    }
    // The served scheduler's error bodies too.
    for (const body of ["{bad", '{"limit":0}', '{"x":1}']) {
      const r = await postScheduler(s, JSON.parse(body.startsWith("{b") ? "{}" : body));
      bodies.push(JSON.stringify(r.body));
    }
    const [vault] = await s
      .sql`select decrypted_secret from vault.decrypted_secrets where name = 'backfill_scheduler_key'`;
    const tokens = (await s
      .sql`select claim_token::text as t from public.backfill_log where claim_token is not null`)
      .map((r) => r.t as string);
    const secrets: [string, string][] = [
      ["secret key", s.secretKey],
      ["service-role key", s.serviceRoleKey],
      ["anon key", s.anonKey],
      ["publishable key", s.publishableKey],
      ["Vault secret", vault.decrypted_secret],
      ["scheduler secret", SECRET],
    ];
    const leaks: string[] = [];
    const logFiles = readdirSync(paths.logDir).map((f) => join(paths.logDir, f));
    let lines = 0;
    for (const file of logFiles) {
      const text = readFileSync(file, "utf8");
      lines += text.split("\n").length;
      for (const [name, value] of secrets) {
        if (text.includes(value)) leaks.push(`${name} in ${file}`);
      }
      const tokenSet = new Set(tokens);
      for (
        const m of text.matchAll(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g)
      ) {
        if (tokenSet.has(m[0])) leaks.push(`claim token ${m[0]} in ${file}`);
      }
    }
    for (const line of logs.lines) {
      for (const [name, value] of secrets) {
        if (line.includes(value)) leaks.push(`${name} in an in-process log line`);
      }
    }
    for (const body of bodies) {
      for (const [name, value] of secrets) {
        if (body.includes(value)) leaks.push(`${name} in an error body: ${body}`);
      }
    }
    const migrations = readdirSync(join(REPO, "supabase/migrations")).filter((f) =>
      f.endsWith(".sql")
    );
    for (const f of migrations) {
      const text = readFileSync(join(REPO, "supabase/migrations", f), "utf8");
      for (const [name, value] of secrets) {
        if (text.includes(value)) leaks.push(`${name} in migration ${f}`);
      }
      if (/sb_secret_[0-9a-f]{8}|eyJhbGciOi/.test(text)) {
        leaks.push(`a key-shaped literal in migration ${f}`);
      }
    }
    console.log(
      `FIGURES secrets: log_files=${logFiles.length} log_lines=${lines} in_process_lines=${logs.lines.length} ` +
        `error_bodies=${bodies.length} migrations=${migrations.length} tokens_checked=${tokens.length} leaks=${leaks.length}`,
    );
    assert.deepEqual(leaks, []);
  },
});
