// Ports, paths and URLs of the local stack, in one place so that the CLI, the test runner, the
// gateway and the benchmarks all agree on them. Importing this module has no side effects.
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

export const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");

// The postgres OS user must be able to reach this folder. A checkout under a private folder
// (a home directory, a `mktemp -d` clone) keeps its stack in /tmp instead, one per checkout;
// BACKFILL_STACK_DIR overrides both.
export const STACK_DIR = Deno.env.get("BACKFILL_STACK_DIR") ??
  (reachableByAll(REPO_ROOT)
    ? join(REPO_ROOT, ".stack")
    : `/tmp/backfill-stack-${hash(REPO_ROOT)}`);

function reachableByAll(dir: string): boolean {
  for (let d = dir;; d = dirname(d)) {
    if ((Deno.statSync(d).mode ?? 0o777) & 0o001) {
      if (d === "/") return true;
    } else return false;
  }
}

function hash(text: string): string {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return (h >>> 0).toString(16);
}

export const DB_HOST = "127.0.0.1";
// Supabase's local defaults (`supabase start`), so URLs copied from its docs keep working.
// BACKFILL_PORT_OFFSET moves them all, so a second, throwaway stack (the benchmark's)
// can run beside this one; with BACKFILL_STACK_DIR it is a fully separate stack. A
// negative offset keeps a throwaway stack below Linux's ephemeral ports (32768+), where
// a long-lived client connection can otherwise be holding the very port it needs.
const PORT_OFFSET = Number(Deno.env.get("BACKFILL_PORT_OFFSET") ?? 0);
export const DB_PORT = 54322 + PORT_OFFSET;
export const POOLER_PORT = 54329 + PORT_OFFSET;
export const API_PORT = 54321 + PORT_OFFSET;
export const API_URL = `http://${"127.0.0.1"}:${API_PORT}`;
export const FUNCTIONS_URL = `${API_URL}/functions/v1`;
/** Where `deno run` serves each edge function; the gateway routes /functions/v1/<name> here. */
export const FUNCTION_PORTS: Record<string, number> = {
  "backfill-scheduler": 54331 + PORT_OFFSET,
  "backfill-worker": 54332 + PORT_OFFSET,
};

export const DB_USER = "postgres";
export const DB_PASSWORD = "postgres";
export const DB_NAME = "postgres";

export const DB_URL = `postgresql://${DB_USER}:${DB_PASSWORD}@${DB_HOST}:${DB_PORT}/${DB_NAME}`;
export const POOLER_URL =
  `postgresql://${DB_USER}:${DB_PASSWORD}@${DB_HOST}:${POOLER_PORT}/${DB_NAME}`;
// The Supabase CLI speaks TLS unless told not to, and this server has no certificate.
export const CLI_DB_URL = `${DB_URL}?sslmode=disable`;

export const PG_BIN = "/usr/lib/postgresql/15/bin";
export const PGBOUNCER_BIN = "/usr/sbin/pgbouncer";

export const TOOLS_DIR = join(REPO_ROOT, "local", "tools");
export const TOOLS_BIN = join(TOOLS_DIR, "node_modules", ".bin");
export const SUPABASE_BIN = join(TOOLS_BIN, "supabase");
export const DENO_BIN = join(TOOLS_BIN, "deno");

export const SQL_DIR = join(REPO_ROOT, "local", "sql");
export const MIGRATIONS_DIR = join(REPO_ROOT, "supabase", "migrations");

export const paths = {
  db: join(STACK_DIR, "db"),
  run: join(STACK_DIR, "run"),
  log: join(STACK_DIR, "log"),
  pgbouncer: join(STACK_DIR, "pgbouncer"),
  postgresLog: join(STACK_DIR, "log", "postgres.log"),
  postmasterPid: join(STACK_DIR, "db", "postmaster.pid"),
  pgbouncerIni: join(STACK_DIR, "pgbouncer", "pgbouncer.ini"),
  pgbouncerUsers: join(STACK_DIR, "pgbouncer", "userlist.txt"),
  pgbouncerPid: join(STACK_DIR, "run", "pgbouncer.pid"),
  pgbouncerLog: join(STACK_DIR, "log", "pgbouncer.log"),
  // Present only while the stand-ins and migrations of the running cluster are applied.
  schemaMarker: join(STACK_DIR, "run", "schema.ok"),
};
