// End to end on the local stack: months enqueued through the gateway (supabase-js, the
// typed client), the real pg_cron job registered by schedule_backfill_scheduler and run as
// pg_cron runs it (its command, as postgres: net.http_post with URL and key read from Vault),
// pg_net delivering to the served backfill-scheduler, which dispatches to the served
// backfill-worker, whose calendar processor loads example_calendar_days. Every month ends
// completed exactly once, with exactly its days written.
//
// The job claims across all sources (limit 50); assertions are on this test's own rows only.

import assert from "node:assert/strict";
import { createClient } from "@supabase/supabase-js";
import { backfillClient, fromSupabase } from "../functions/_shared/backfill_client.ts";
import { daysOfMonth } from "../functions/backfill-worker/processors/calendar.ts";
import { connect, sleep, uniqueSource } from "./_support/db.ts";
import { hasStack, stack } from "./_support/stack.ts";

const SOURCES = 3;
const FROM = "2023-01-01";
const TO = "2023-12-01";
const MONTHS = 12;
const FIRE_EVERY_MS = 2_000;
const DEADLINE_MS = 60_000;

Deno.test({
  name:
    "end to end: the real cron job's command, through pg_net, scheduler and worker, completes every month exactly once with exactly its days",
  ignore: !hasStack(),
  sanitizeResources: false, // supabase-js keeps a fetch client
  fn: async () => {
    const s = stack();
    const rest = backfillClient(fromSupabase(createClient(s.apiUrl, s.secretKey, {
      auth: { persistSession: false },
    })));
    const sql = connect({ max: 2 });
    const sources = Array.from({ length: SOURCES }, () => `calendar:${uniqueSource()}`);
    const total = SOURCES * MONTHS;
    try {
      for (const source of sources) {
        assert.equal(await rest.enqueue({ source, from: FROM, to: TO }), MONTHS);
      }

      const jobs = await sql`select * from public.schedule_backfill_scheduler('* * * * *', 50)`;
      assert.deepEqual(jobs.map((j) => j.jobname).sort(), [
        "backfill-reaper",
        "backfill-scheduler",
      ]);
      const [{ command }] = await sql`
        select command from cron.job where jobname = 'backfill-scheduler'`;
      assert.ok(!command.includes(s.secretKey), "the job's text holds the key");
      assert.match(command, /vault\.decrypted_secrets/);

      const requestIds: number[] = [];
      const started = performance.now();
      let completed = 0;
      while (completed < total) {
        assert.ok(
          performance.now() - started < DEADLINE_MS,
          `only ${completed}/${total} months completed after ${DEADLINE_MS} ms`,
        );
        const [fired] = await sql.unsafe(command); // as pg_cron runs it
        requestIds.push(Number(Object.values(fired)[0]));
        const deadline = performance.now() + FIRE_EVERY_MS;
        while (performance.now() < deadline) {
          const progress = (await rest.progress()).filter((p) => sources.includes(p.source));
          completed = progress.reduce((n, p) => n + p.completed, 0);
          const failed = progress.reduce((n, p) => n + p.failed, 0);
          assert.equal(failed, 0, "a month failed");
          if (completed === total) break;
          await sleep(250);
        }
      }

      // Every month completed, by its first and only claim, with exactly its days.
      const rows = await sql`
        select source, month::text, status, attempts, result
        from public.backfill_log where source in ${sql(sources)} order by source, month`;
      assert.equal(rows.length, total);
      for (const row of rows) {
        const days = daysOfMonth(row.month);
        assert.equal(row.status, "completed", `${row.source} ${row.month}`);
        assert.equal(row.attempts, 1, `${row.source} ${row.month} took ${row.attempts} attempts`);
        assert.deepEqual(row.result, {
          rows: days.length,
          firstDay: days[0].day,
          lastDay: days.at(-1)!.day,
        });
      }
      const written = await sql`
        select source, to_char(day, 'YYYY-MM-01') as month, count(*)::int as days,
               count(distinct day)::int as distinct_days, min(day)::text as first,
               max(day)::text as last
        from public.example_calendar_days where source in ${sql(sources)}
        group by 1, 2 order by 1, 2`;
      assert.equal(written.length, total, "not every month has days");
      for (const w of written) {
        const days = daysOfMonth(w.month);
        assert.equal(w.days, days.length, `${w.source} ${w.month}`);
        assert.equal(w.distinct_days, days.length);
        assert.equal(w.first, days[0].day);
        assert.equal(w.last, days.at(-1)!.day);
      }
      const [{ year }] = await sql`
        select count(*)::int as year from public.example_calendar_days
        where source = ${sources[0]}`;
      assert.equal(year, 365);

      // pg_net recorded a 200 for every request the job made; across their summaries each of
      // this test's months was dispatched once and never released or lost.
      const responses = await (async () => {
        for (const until = performance.now() + 15_000;;) {
          const got = await sql`
            select id, status_code, content, error_msg from net._http_response
            where id in ${sql(requestIds)}`;
          if (got.length === requestIds.length || performance.now() > until) return got;
          await sleep(200);
        }
      })();
      assert.equal(responses.length, requestIds.length, "a request has no recorded response");
      const dispatched = new Map<string, number>();
      for (const r of responses) {
        assert.equal(
          r.status_code,
          200,
          `request ${r.id}: ${r.status_code} ${r.error_msg ?? r.content}`,
        );
        const summary = JSON.parse(r.content);
        for (const c of summary.claims) {
          if (!sources.includes(c.source)) continue;
          assert.equal(c.outcome, "dispatched", JSON.stringify(c));
          const key = `${c.source} ${c.month}`;
          dispatched.set(key, (dispatched.get(key) ?? 0) + 1);
        }
      }
      assert.ok([...dispatched.values()].every((n) => n === 1), "a month was dispatched twice");
      // (pg_cron itself may have fired the job once meanwhile; attempts = 1 above shows that
      // every month was claimed once in all.)
      console.log(
        `end to end: ${total} months in ${((performance.now() - started) / 1000).toFixed(1)} s, ` +
          `${requestIds.length} job runs, ${dispatched.size} dispatched by them`,
      );
    } finally {
      await sql`select public.unschedule_backfill_scheduler()`;
      await sql`delete from public.example_calendar_days where source in ${sql(sources)}`;
      await sql`delete from public.backfill_log where source in ${sql(sources)}`;
      await sql.end({ timeout: 5 });
    }
  },
});
