// The served backfill-scheduler (fault stack, through the gateway) under a seeded fuzzer:
// random methods, headers and key variants, and bodies (truncated JSON, wrong types, huge,
// negative and fractional numbers, unknown fields, very long strings, deep nesting,
// non-UTF-8). Every answer is JSON with a 2xx or 4xx status, exactly the one the contract
// gives (an independent oracle, below), never a 5xx or a crash; and a refused request changes
// nothing: the tables' hash is the same before and after every batch of refused requests.
// Requests the oracle says are valid go in a separate, counted group at the end.

import assert from "node:assert/strict";
import { faultStack, paths, readPid, sleep } from "../faults/_stack.ts";
import { deep, type Rng, rng, seedFromEnv } from "./_prng.ts";

const REQUESTS = 1200;

interface Fuzzed {
  method: string;
  headers: Record<string, string>;
  body: Uint8Array | undefined;
  describe: string;
  expected: number;
}

const enc = new TextEncoder();

function keyVariant(
  r: Rng,
  k: { secret: string; others: string[] },
): [Record<string, string>, boolean, string] {
  const v = r.int(0, 13);
  switch (v) {
    case 0:
      return [{}, false, "no key"];
    case 1:
      return [{ apikey: k.secret }, true, "apikey"];
    case 2:
      return [{ authorization: `Bearer ${k.secret}` }, true, "bearer"];
    case 3:
      return [{ apikey: r.pick(k.others) }, false, "other project key"];
    case 4:
      return [
        { authorization: `Bearer ${r.pick(k.others)}` },
        false,
        "other project key as bearer",
      ];
    case 5:
      return [{ authorization: "Bearer " }, false, "empty bearer"];
    case 6:
      return [{ authorization: `bearer ${k.secret}` }, false, "lower-case bearer"];
    case 7:
      return [{ apikey: k.secret.slice(0, -1) }, false, "truncated key"];
    case 8:
      return [{ apikey: `${k.secret}x` }, false, "key + x"];
    case 9:
      return [{ authorization: `Basic ${btoa(`x:${k.secret}`)}` }, false, "basic auth"];
    case 10:
      return [
        { apikey: "wrong", authorization: `Bearer ${k.secret}` },
        true,
        "wrong apikey, right bearer",
      ];
    case 11:
      return [{ apikey: k.secret.toUpperCase() }, false, "upper-cased key"];
    case 12:
      return [{ apikey: r.string(300, "abcdef0123456789_") }, false, "random key"];
    default:
      return [{ authorization: `Bearer  ${k.secret}` }, false, "bearer with two spaces"];
  }
}

const FIELDS = ["limit", "source", "leaseSeconds", "dryRun"];

function fieldValue(r: Rng, field: string): unknown {
  const numbers = [
    0,
    1,
    2,
    10,
    99,
    100,
    101,
    -1,
    -0,
    1.5,
    0.1,
    9.999,
    1e308,
    -1e308,
    2 ** 53 + 1,
    86400,
    86401,
    9,
    3600,
    1e3,
  ];
  switch (r.int(0, 9)) {
    case 0:
      return null;
    case 1:
      return r.string(40);
    case 2:
      return r.chance(0.5);
    case 3:
      return [1];
    case 4:
      return { x: 1 };
    case 5:
      return r.string(r.chance(0.2) ? 5000 : 250);
    case 6:
      return deep(r.int(1, 50));
    default:
      if (field === "source") {
        return r.chance(0.1) ? `calendar:\u0000${r.string(5)}` : `calendar:${r.string(30)}`;
      }
      if (field === "dryRun") return r.chance(0.5);
      return r.pick(numbers);
  }
}

function valid(body: unknown): boolean {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return false;
  for (const [k, v] of Object.entries(body)) {
    const int = (min: number, max: number) =>
      typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;
    if (k === "limit" && !int(1, 100)) return false;
    if (k === "leaseSeconds" && !int(10, 86400)) return false;
    if (k === "dryRun" && typeof v !== "boolean") return false;
    if (
      k === "source" &&
      !(typeof v === "string" && v.length >= 1 && v.length <= 200 && !v.includes("\u0000") &&
        v.isWellFormed())
    ) return false;
    if (!FIELDS.includes(k)) return false;
  }
  return true;
}

function fuzzBody(r: Rng, target: string): [Uint8Array | undefined, unknown, string] {
  const object: Record<string, unknown> = {};
  for (const f of FIELDS) {
    if (r.chance(0.5)) {
      object[f] = r.chance(0.6) ? goodValue(r, f, target) : fieldValue(r, f);
    }
  }
  if (r.chance(0.1)) {
    object[r.pick(["extra", "__proto__", "constructor", "LIMIT", ""])] = r.pick([1, "x", null]);
  }
  const text = JSON.stringify(object);
  switch (r.int(0, 13)) {
    case 0:
      return [undefined, {}, "no body"];
    case 1:
      return [enc.encode(" \n\t"), {}, "whitespace"];
    case 2: {
      const cut = text.slice(0, r.int(1, Math.max(1, text.length - 1)));
      return [enc.encode(cut), parseOr(cut), "truncated JSON"];
    }
    case 3:
      return [
        enc.encode(r.pick(["null", "[]", "1", '"x"', "true", "{", "}", "[{}]", "{'a':1}", "NaN"])),
        undefined,
        "not an object",
      ];
    case 4: {
      const bytes = new Uint8Array([
        ...enc.encode(text.slice(0, -1)),
        0xff,
        0xfe,
        0xc3,
        0x28,
        ...enc.encode("}"),
      ]);
      return [bytes, parseOr(new TextDecoder().decode(bytes)), "non-UTF-8"];
    }
    case 5: {
      const bytes = enc.encode(`{"source":"calendar:\xff"}`).map((b) => b); // U+00FF, valid UTF-8
      bytes[bytes.length - 3] = 0x80; // a lone continuation byte inside the string
      return [bytes, parseOr(new TextDecoder().decode(bytes)), "non-UTF-8 inside a string"];
    }
    case 6: {
      const nested = JSON.stringify({ ...object, extra: deep(r.int(100, 5000)) });
      return [enc.encode(nested), JSON.parse(nested), "deep nesting"];
    }
    case 7: {
      const big = JSON.stringify({ source: "x".repeat(r.int(201, 300_000)) });
      return [enc.encode(big), JSON.parse(big), "very long string"];
    }
    case 8:
      return [
        enc.encode(text.replace(/"limit":\s*\d+/, '"limit": 1e999')),
        parseOr(text.replace(/"limit":\s*\d+/, '"limit": 1e999')),
        "overflowing number",
      ];
    // A UTF-8 byte order mark is dropped by the decoder (WHATWG Encoding), as by req.text().
    case 9:
      return [enc.encode(`\ufeff${text}`), object, "BOM"];
    case 10: {
      const odd = {
        ...object,
        source: r.pick(["calendar:\u0000", "\u0000", "calendar:\ud800", "calendar:\udfff\ud800"]),
      };
      const json = JSON.stringify(odd);
      return [enc.encode(json), JSON.parse(json), "NUL or lone surrogate in source"];
    }
    default:
      return [enc.encode(text), object, "object"];
  }
}

function goodValue(r: Rng, field: string, target: string): unknown {
  if (field === "limit") return r.int(1, 3);
  if (field === "leaseSeconds") return r.int(10, 86400);
  if (field === "dryRun") return r.chance(0.7);
  return r.chance(0.8) ? target : `calendar:${r.string(20)}`;
}

function parseOr(text: string): unknown {
  try {
    return text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    return undefined; // not JSON: 400
  }
}

function generate(r: Rng, keys: { secret: string; others: string[] }, target: string): Fuzzed {
  const method = r.chance(0.8)
    ? "POST"
    : r.pick(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND"]);
  const [headers, authorized, keyCase] = keyVariant(r, keys);
  if (r.chance(0.5)) {
    headers["content-type"] = r.pick([
      "application/json",
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
    ]);
  }
  if (r.chance(0.1)) headers["x-forwarded-for"] = r.string(50, "0123456789.");
  const [body, parsed, bodyCase] = method === "GET" || method === "HEAD"
    ? [undefined, {}, "no body"] as const
    : fuzzBody(r, target);
  const expected = method !== "POST" ? 405 : !authorized ? 401 : valid(parsed) ? 200 : 400;
  return { method, headers, body, describe: `${method} ${keyCase} ${bodyCase}`, expected };
}

async function tableHash(sql: any): Promise<string> {
  const [{ h }] = await sql`
    select md5(coalesce((select string_agg(b::text, '|' order by b.source, b.month) from public.backfill_log b), '')
               || coalesce((select count(*)::text || max(loaded_at)::text from public.example_calendar_days), '')) as h`;
  return h;
}

Deno.test({
  name:
    `hostile: the served scheduler under ${REQUESTS} fuzzed requests answers JSON 2xx/4xx as the contract says; refused requests change nothing`,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const s = await faultStack();
    const seed = seedFromEnv();
    console.log(`  fuzz seed ${seed} (FUZZ_SEED=${seed} to repeat)`);
    const r = rng(seed);
    // Work for a wrongly accepted request to take: pending months of one source.
    const target = `calendar:f-${crypto.randomUUID()}`;
    await s.client.enqueue({ source: target, from: "1950-01-01", to: "1969-12-01" });
    // Quiet: nothing in flight from earlier tests.
    for (let i = 0; i < 100; i++) {
      const [{ n }] = await s
        .sql`select count(*)::int as n from public.backfill_log where status = 'processing'`;
      if (n === 0) break;
      await s.sql`select public.reap_expired_backfill_leases()`;
      await sleep(300);
    }
    const keys = { secret: s.secretKey, others: [s.anonKey, s.publishableKey, s.serviceRoleKey] };
    const requests = Array.from({ length: REQUESTS }, () => generate(r, keys, target));
    const refused = requests.filter((q) => q.expected !== 200);
    const accepted = requests.filter((q) => q.expected === 200);
    const pid = readPid(paths.functionPid("backfill-scheduler"));

    const byStatus: Record<number, number> = {};
    const wrong: string[] = [];
    const send = async (q: Fuzzed) => {
      const res = await fetch(s.schedulerUrl, {
        method: q.method,
        headers: q.headers,
        body: q.body as BodyInit | undefined,
      });
      const text = await res.text();
      byStatus[res.status] = (byStatus[res.status] ?? 0) + 1;
      const isJson = /^application\/json/.test(res.headers.get("content-type") ?? "");
      let parsed = true;
      if (q.method !== "HEAD") {
        try {
          JSON.parse(text);
        } catch {
          parsed = false;
        }
      }
      if (res.status !== q.expected || !isJson || !parsed) {
        wrong.push(
          `${q.describe}: expected ${q.expected}, got ${res.status} ${text.slice(0, 200)}`,
        );
      }
    };

    let batches = 0;
    const changed: number[] = [];
    for (let i = 0; i < refused.length; i += 100) {
      const before = await tableHash(s.sql);
      const batch = refused.slice(i, i + 100);
      for (let j = 0; j < batch.length; j += 10) {
        await Promise.all(batch.slice(j, j + 10).map(send));
      }
      const after = await tableHash(s.sql);
      if (before !== after) changed.push(batches);
      batches++;
    }
    const refusedStatuses = { ...byStatus };
    for (const q of accepted) await send(q);
    assert.equal(readPid(paths.functionPid("backfill-scheduler")), pid, "the scheduler restarted");
    const answered = await fetch(s.schedulerUrl, {
      method: "POST",
      headers: { apikey: s.secretKey },
      body: JSON.stringify({ dryRun: true }),
    });
    assert.equal(answered.status, 200, "the scheduler stopped answering");
    await answered.body?.cancel();
    console.log(
      `FIGURES scheduler fuzz: seed=${seed} requests=${requests.length} refused_group=${refused.length} ` +
        `(${batches} batches, batches_that_changed_the_db=${changed.length}) valid_group=${accepted.length} ` +
        `statuses=${JSON.stringify(byStatus)} refused_statuses=${
          JSON.stringify(refusedStatuses)
        } ` +
        `5xx=${
          Object.entries(byStatus).filter(([k]) => Number(k) >= 500).reduce((n, [, v]) => n + v, 0)
        } ` +
        `not_as_expected=${wrong.length}`,
    );
    assert.deepEqual(
      wrong.slice(0, 10),
      [],
      `seed ${seed}: ${wrong.length} answers not as the contract says`,
    );
    assert.deepEqual(changed, [], `seed ${seed}: refused requests changed the database`);
    assert.ok(refused.length >= 1000 || requests.length >= 1000);
  },
});
