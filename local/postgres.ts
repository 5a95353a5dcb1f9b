// The PostgreSQL 15 cluster in .stack/db, configured to behave like a Supabase database
// (pg_cron preloaded, Supabase's port) and reachable only from this machine.
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DB_HOST, DB_PORT, DB_URL, paths, PG_BIN, STACK_DIR } from "./config.ts";
import {
  assertPortFree,
  isRoot,
  log,
  PG_OS_USER,
  pidFileAlive,
  run,
  runOk,
  StackError,
  waitFor,
} from "./proc.ts";
import type { Service } from "./service.ts";

const PSQL = join(PG_BIN, "psql");

/** Run SQL text with psql against the direct URL (or another), stopping at the first error. */
export async function psql(sql: string, url = DB_URL): Promise<string> {
  return await runOk(PSQL, ["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]);
}

/** Run a .sql file with psql; `vars` become psql variables (:'name'). */
export async function psqlFile(
  file: string,
  opts: { url?: string; vars?: Record<string, string> } = {},
): Promise<string> {
  const args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", opts.url ?? DB_URL, "-f", file];
  for (const [k, v] of Object.entries(opts.vars ?? {})) args.push("-v", `${k}=${v}`);
  return await runOk(PSQL, args);
}

/** True when a trivial query answers on `url` within a few seconds. */
export async function answers(url: string): Promise<boolean> {
  const sep = url.includes("?") ? "&" : "?";
  // connect_timeout bounds only the connection: through PgBouncer with postgres down, the
  // query then waits for a server up to query_wait_timeout (120 s), so bound the whole run.
  const r = await run("timeout", [
    "5",
    PSQL,
    "-X",
    "-tA",
    "-d",
    `${url}${sep}connect_timeout=2`,
    "-c",
    "select 1",
  ]);
  return r.code === 0 && r.stdout.trim() === "1";
}

// Data and socket dirs must belong to the user the server runs as.
export async function ownedByPostgres(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  if (!isRoot()) return;
  const uid = Number((await runOk("id", ["-u", PG_OS_USER])).trim());
  const gid = Number((await runOk("id", ["-g", PG_OS_USER])).trim());
  if (statSync(dir).uid !== uid) Deno.chownSync(dir, uid, gid);
}

async function assertReachableByPostgres(): Promise<void> {
  if (!isRoot()) return;
  const r = await run("test", ["-w", STACK_DIR, "-a", "-x", STACK_DIR], { asPostgres: true });
  if (r.code !== 0) {
    throw new StackError(
      `the postgres OS user cannot reach ${STACK_DIR} (a parent folder is not traversable); ` +
        `set BACKFILL_STACK_DIR to a folder it can reach, e.g. /tmp/backfill-stack`,
    );
  }
}

// Rewritten on every start, so a change here takes effect on the next start of an old cluster.
function serverConf(): string {
  return `# Written by local/postgres.ts on every start; edits here are lost.
listen_addresses = '${DB_HOST}'
port = ${DB_PORT}
unix_socket_directories = '${paths.run}'
max_connections = 200
shared_buffers = 256MB
# pg_cron runs each job in a background worker (as on Supabase), which counts against this.
max_worker_processes = 20
shared_preload_libraries = 'pg_cron,pg_stat_statements'
cron.database_name = 'postgres'
cron.use_background_workers = on
cron.max_running_jobs = 8
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = 2000
`;
}

const HBA =
  `# Written by local/postgres.ts: local development only, nothing listens beyond 127.0.0.1.
local all all trust
host  all all 127.0.0.1/32 trust
`;

async function initCluster(): Promise<void> {
  log(`initdb ${paths.db}`);
  await runOk(join(PG_BIN, "initdb"), [
    "-D",
    paths.db,
    "-U",
    "postgres",
    "--auth=trust",
    "--encoding=UTF8",
    "--locale=C.UTF-8",
  ], { asPostgres: true });
  // include_if_exists keeps initdb's own defaults intact and our settings in one file.
  const conf = join(paths.db, "postgresql.conf");
  const text = Deno.readTextFileSync(conf);
  Deno.writeTextFileSync(conf, `${text}\ninclude_if_exists = 'stack.conf'\n`);
}

export const postgres: Service = {
  name: "postgres",
  describe: () => `${DB_URL}  (data ${paths.db}, log ${paths.postgresLog})`,

  async isUp() {
    return pidFileAlive(paths.postmasterPid, "postgres") !== null && await answers(DB_URL);
  },

  async start() {
    for (const d of [STACK_DIR, paths.run, paths.log]) await ownedByPostgres(d);
    await assertReachableByPostgres();
    if (!existsSync(join(paths.db, "PG_VERSION"))) {
      // initdb wants an empty (or absent) directory it can own.
      await ownedByPostgres(paths.db);
      await initCluster();
    }
    writeFileSync(join(paths.db, "stack.conf"), serverConf());
    writeFileSync(join(paths.db, "pg_hba.conf"), HBA);
    if (isRoot()) {
      await runOk("chown", [
        `${PG_OS_USER}:`,
        join(paths.db, "stack.conf"),
        join(paths.db, "pg_hba.conf"),
      ]);
    }
    if (pidFileAlive(paths.postmasterPid, "postgres") === null) {
      await assertPortFree(DB_HOST, DB_PORT, "postgres");
      log("starting postgres");
      // -w waits for startup; pg_ctl removes a stale postmaster.pid of a dead server itself.
      const r = await run(join(PG_BIN, "pg_ctl"), [
        "start",
        "-w",
        "-t",
        "60",
        "-D",
        paths.db,
        "-l",
        paths.postgresLog,
      ], { asPostgres: true });
      if (r.code !== 0) {
        throw new StackError(
          `postgres did not start (pg_ctl exit ${r.code}); see ${paths.postgresLog}\n` +
            (await tail(paths.postgresLog)),
        );
      }
    }
    await waitFor("postgres", () => answers(DB_URL), 30_000);
  },

  async stop() {
    if (!existsSync(join(paths.db, "PG_VERSION"))) return;
    if (pidFileAlive(paths.postmasterPid, "postgres") === null) return;
    log("stopping postgres");
    // fast: roll back open transactions instead of waiting for clients to leave.
    await runOk(join(PG_BIN, "pg_ctl"), ["stop", "-w", "-t", "60", "-m", "fast", "-D", paths.db], {
      asPostgres: true,
    });
  },
};

export async function tail(file: string, lines = 15): Promise<string> {
  try {
    return (await Deno.readTextFile(file)).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}
