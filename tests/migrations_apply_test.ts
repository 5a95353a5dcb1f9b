// The migrations apply unchanged, in file-name order, with plain `psql -v ON_ERROR_STOP=1`
// on a bare PostgreSQL 15 that has pg_cron loaded, the Supabase roles and the old default
// of granting everything in public to anon and authenticated — and no pg_net and no Vault,
// as a project may be before those are enabled. (`supabase db push` onto the full local
// stack is what `deno task local start` does for every other test.)

import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { MIGRATIONS_DIR, PG_BIN, SQL_DIR } from "../local/config.ts";
import { run, runOk } from "../local/proc.ts";

const PORT = 54722;

const PSQL = join(PG_BIN, "psql");
/** psql against the scratch cluster, as its superuser, with `extra` arguments. */
const psqlArgs = (...extra: string[]) => [
  "-X",
  "-q",
  "-h",
  "127.0.0.1",
  "-p",
  String(PORT),
  "-U",
  "postgres",
  "-d",
  "postgres",
  ...extra,
];

async function psqlFile(dir: string, file: string) {
  return await run(PSQL, psqlArgs("-v", "ON_ERROR_STOP=1", "-f", file), { cwd: dir });
}

async function query(sql: string): Promise<string> {
  return (await runOk(PSQL, psqlArgs("-tA", "-v", "ON_ERROR_STOP=1", "-c", sql))).trim();
}

Deno.test("the migrations apply with plain psql on bare Postgres without pg_net or Vault", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "backfill-migrations-" });
  await Deno.chmod(dir, 0o777);
  const data = join(dir, "db");
  await runOk(join(PG_BIN, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust"], {
    asPostgres: true,
  });
  await Deno.writeTextFile(
    join(data, "postgresql.auto.conf"),
    `port = ${PORT}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '${dir}'\n` +
      `shared_preload_libraries = 'pg_cron'\ncron.database_name = 'postgres'\n`,
    { append: true },
  );
  await runOk(join(PG_BIN, "pg_ctl"), ["-D", data, "-l", join(dir, "log"), "-w", "start"], {
    asPostgres: true,
  });
  try {
    await t.step("Supabase roles and old default grants, nothing else", async () => {
      const r = await psqlFile(dir, join(SQL_DIR, "supabase_roles.sql"));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        await query("select to_regnamespace('net') is null and to_regnamespace('vault') is null"),
        "t",
      );
    });

    const files = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith(".sql")).sort();
    for (const f of files) {
      await t.step(`psql -v ON_ERROR_STOP=1 -f ${f}`, async () => {
        const r = await psqlFile(dir, join(MIGRATIONS_DIR, f));
        assert.equal(r.code, 0, `${f} failed:\n${r.stderr}`);
      });
    }

    await t.step("the default grants to anon and authenticated were revoked", async () => {
      assert.equal(
        await query(`select bool_or(has_function_privilege(r, p.oid, 'execute'))
                     from pg_proc p, unnest(array['anon', 'authenticated']) r
                     where p.pronamespace in ('public'::regnamespace, 'backfill_internal'::regnamespace)`),
        "f",
      );
      assert.equal(
        await query(`select has_table_privilege('anon', 'public.backfill_log', 'select')
                        or has_table_privilege('authenticated', 'public.backfill_log', 'insert')`),
        "f",
      );
    });

    await t.step("the API works as service_role", async () => {
      assert.equal(
        await query(`set role service_role;
          select public.enqueue_backfill_months('bare', '2020-01-01', '2020-02-01');
          select public.complete_backfill_month(
            (select claim_token from public.claim_backfill_months(1, p_source => 'bare')));`),
        "2\nt",
      );
    });

    await t.step("scheduling says what is missing: pg_net and Vault", async () => {
      const r = await run(
        PSQL,
        psqlArgs(
          "-tA",
          "-v",
          "VERBOSITY=verbose",
          "-c",
          "set role service_role; select * from public.schedule_backfill_scheduler()",
        ),
      );
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /55000/);
      assert.match(r.stderr, /pg_net/);
      assert.match(r.stderr, /Vault/);
    });
  } finally {
    await run(join(PG_BIN, "pg_ctl"), ["-D", data, "-m", "immediate", "stop"], {
      asPostgres: true,
    });
    await Deno.remove(dir, { recursive: true });
  }
});
