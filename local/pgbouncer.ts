// PgBouncer in transaction mode in front of the cluster: the way Supabase's pooler (Supavisor,
// port 6543) is used by serverless clients, so session state that leaks across transactions
// shows up here too.
import { existsSync, writeFileSync } from "node:fs";
import {
  DB_HOST,
  DB_PORT,
  DB_USER,
  paths,
  PGBOUNCER_BIN,
  POOLER_PORT,
  POOLER_URL,
} from "./config.ts";
import {
  assertPortFree,
  killAndWait,
  log,
  pidFileAlive,
  run,
  StackError,
  waitFor,
} from "./proc.ts";
import { answers, ownedByPostgres, tail } from "./postgres.ts";
import type { Service } from "./service.ts";

function ini(): string {
  return `; Written by local/pgbouncer.ts on every start; edits here are lost.
[databases]
postgres = host=${DB_HOST} port=${DB_PORT} dbname=postgres
; scratch databases made by tests are reachable through the pooler too
* = host=${DB_HOST} port=${DB_PORT}

[pgbouncer]
listen_addr = ${DB_HOST}
listen_port = ${POOLER_PORT}
unix_socket_dir = ${paths.run}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
; the server side trusts 127.0.0.1, so checking passwords here would only add a second copy
auth_type = trust
auth_file = ${paths.pgbouncerUsers}
admin_users = ${DB_USER}
stats_users = ${DB_USER}
; drivers send these at startup; refusing them would break connections, not catch bugs
ignore_startup_parameters = extra_float_digits
pidfile = ${paths.pgbouncerPid}
logfile = ${paths.pgbouncerLog}
server_lifetime = 3600
server_idle_timeout = 600
`;
}

// With auth_type=trust PgBouncer still only admits users listed in the auth file.
const USERS = ["postgres", "authenticator", "service_role", "anon", "authenticated"];

export const pgbouncer: Service = {
  name: "pgbouncer",
  describe: () => `${POOLER_URL}  (transaction mode, log ${paths.pgbouncerLog})`,

  async isUp() {
    return pidFileAlive(paths.pgbouncerPid, "pgbouncer") !== null && await answers(POOLER_URL);
  },

  async start() {
    await ownedByPostgres(paths.pgbouncer);
    writeFileSync(paths.pgbouncerIni, ini());
    writeFileSync(paths.pgbouncerUsers, USERS.map((u) => `"${u}" ""`).join("\n") + "\n");
    // Alive but not answering (start is only called then): a clean restart beats diagnosing it.
    const stale = pidFileAlive(paths.pgbouncerPid, "pgbouncer");
    if (stale !== null) await killAndWait(stale, "pgbouncer");
    // A pid file left by a pgbouncer that died (kill -9): PgBouncer refuses to start while the
    // pid in it is alive, and after a crash that pid may already belong to another process.
    await Deno.remove(paths.pgbouncerPid).catch(() => {});
    await assertPortFree(DB_HOST, POOLER_PORT, "pgbouncer");
    log("starting pgbouncer");
    const r = await run(PGBOUNCER_BIN, ["-d", "-q", paths.pgbouncerIni], { asPostgres: true });
    if (r.code !== 0) {
      throw new StackError(
        `pgbouncer did not start (exit ${r.code}): ${(r.stderr || r.stdout).trim()}\n` +
          (await tail(paths.pgbouncerLog)),
      );
    }
    await waitFor("pgbouncer", () => answers(POOLER_URL), 20_000).catch(async (e) => {
      throw new StackError(`${(e as Error).message}\n${await tail(paths.pgbouncerLog)}`);
    });
  },

  async stop() {
    if (!existsSync(paths.pgbouncerPid)) return;
    const pid = pidFileAlive(paths.pgbouncerPid, "pgbouncer");
    if (pid !== null) {
      log("stopping pgbouncer");
      // SIGTERM is PgBouncer's immediate shutdown (SIGINT would wait for clients to leave).
      await killAndWait(pid, "pgbouncer");
    }
    await Deno.remove(paths.pgbouncerPid).catch(() => {});
  },
};
