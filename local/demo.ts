// `deno task start`: the main job. Brings the local stack up, enqueues a demo
// backfill (several sources × a few years of months, run by the example `calendar`
// processor), registers the real pg_cron schedule, and shows live per-source progress
// until every month is completed.
//
// pg_cron 1.4 fires at most once a minute, so the demo also runs the registered
// scheduler job's own SQL (cron.job.command: net.http_post with URL and key from
// Vault) every couple of seconds, exactly as pg_cron would run it.

import { createClient } from "@supabase/supabase-js";
import postgres from "postgres";
import {
  backfillClient,
  fromSupabase,
  type ProgressRow,
} from "../functions/_shared/backfill_client.ts";
import { start } from "./cli.ts";
import { API_URL, DB_URL } from "./config.ts";
import { keys } from "./keys.ts";

const SOURCES = ["calendar:eu", "calendar:us", "calendar:jp", "calendar:au"];
const FROM = "2020-01-01";
const TO = "2024-12-01";
const FIRE_EVERY_MS = 2_000;
const GIVE_UP_AFTER_MS = 10 * 60_000;

await start();
const client = backfillClient(fromSupabase(createClient(API_URL, keys().secretKey, {
  auth: { persistSession: false },
})));
const sql = postgres(DB_URL, { max: 2, onnotice: () => {} });

// A fresh run each time: the demo's own sources start over.
await sql`delete from public.backfill_log where source in ${sql(SOURCES)}`;
await sql`delete from public.example_calendar_days where source in ${sql(SOURCES)}`;
for (const [i, source] of SOURCES.entries()) {
  await client.enqueue({ source, from: FROM, to: TO, priority: SOURCES.length - i });
}
const [{ jobname }] =
  await sql`select jobname from public.schedule_backfill_scheduler('* * * * *', 12)`;
const [{ command }] = await sql`select command from cron.job where jobname = ${jobname}`;

const fire = setInterval(() => sql.unsafe(command).catch(() => {}), FIRE_EVERY_MS);
await sql.unsafe(command);

const tty = Deno.stdout.isTerminal();
const started = performance.now();
let lastPrinted = 0;
let drawnLines = 0;

function bar(done: number, total: number, width = 30): string {
  const filled = total ? Math.round((done / total) * width) : 0;
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
}

function render(rows: ProgressRow[]): string[] {
  const seconds = (performance.now() - started) / 1000;
  const total = rows.reduce((n, r) => n + r.total, 0);
  const completed = rows.reduce((n, r) => n + r.completed, 0);
  const rate = completed / Math.max(seconds, 0.001);
  const eta = rate > 0 ? `${Math.ceil((total - completed) / rate)}s` : "?";
  return [
    ...rows.map((r) =>
      `${r.source.padEnd(12)} ${bar(r.completed, r.total)} ${
        String(r.completed).padStart(3)
      }/${r.total}` +
      `  pending ${r.pending} processing ${r.processing} retry ${r.retry} failed ${r.failed}`
    ),
    `all          ${completed}/${total} months  ${rate.toFixed(1)} months/s  elapsed ${
      seconds.toFixed(0)
    }s  eta ${eta}`,
  ];
}

let rows: ProgressRow[] = [];
try {
  for (;;) {
    rows = (await client.progress()).filter((r) => SOURCES.includes(r.source));
    const lines = render(rows);
    if (tty) {
      if (drawnLines) Deno.stdout.writeSync(new TextEncoder().encode(`\x1b[${drawnLines}A`));
      console.log(lines.map((l) => `\x1b[2K${l}`).join("\n"));
      drawnLines = lines.length;
    } else if (performance.now() - lastPrinted > 3_000) {
      console.log(lines.join("\n") + "\n");
      lastPrinted = performance.now();
    }
    const settled = rows.every((r) => r.completed + r.failed === r.total);
    if (settled) break;
    if (performance.now() - started > GIVE_UP_AFTER_MS) {
      throw new Error("the demo did not finish in time");
    }
    await new Promise((r) => setTimeout(r, 500));
  }
} finally {
  clearInterval(fire);
  await sql`select public.unschedule_backfill_scheduler()`;
}

const [written] = await sql`
  select count(*)::int as days, count(distinct (source, date_trunc('month', day)))::int as months
  from public.example_calendar_days where source in ${sql(SOURCES)}`;
const [attempts] = await sql`
  select sum(attempts)::int as attempts, count(*)::int as months,
         count(*) filter (where status = 'completed')::int as completed
  from public.backfill_log where source in ${sql(SOURCES)}`;
await sql.end();

if (!tty) console.log(render(rows).join("\n"));
console.log(
  `
done in ${
    ((performance.now() - started) / 1000).toFixed(1)
  }s: ${attempts.completed}/${attempts.months} months completed, ` +
    `${attempts.attempts} attempts, ${written.days} days written for ${written.months} months.
The stack is still running: \`deno task local status\`; stop it with \`deno task local stop\`.`,
);
Deno.exit(attempts.completed === attempts.months ? 0 : 1);
