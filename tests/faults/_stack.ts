// The fault tests' own throwaway stack: a second, complete local stack in /tmp/backfill-faults
// with every port moved by 300 (postgres 54622, pooler 54629, gateway 54621, functions
// 54631/54632), so that killing its parts never disturbs the main stack other tests use.
//
// `faultStack()` starts it (idempotently: `local/cli.ts start` restarts whatever is not up)
// and reads its URLs and keys from `status -o env`. The helpers below inject the faults:
// postgres stopped fast or its postmaster killed -9, PgBouncer killed, a served function
// killed -9; `ensureUp()` brings back what is down, as an operator (or a supervisor) would.
// tests/run.ts stops the stack after the slow group; FAULT_STACK_KEEP=1 keeps it.

import postgres from "postgres";
import { createClient } from "@supabase/supabase-js";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type BackfillClient,
  backfillClient,
  fromPostgres,
  fromSupabase,
} from "../../functions/_shared/backfill_client.ts";

export const REPO = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
export const DENO = join(REPO, "local/tools/node_modules/.bin/deno");
export const STACK_DIR = "/tmp/backfill-faults";
export const PORT_OFFSET = "300";
/** Per month of the served worker's calendar processor (× 0.5–1.5). */
export const DEMO_DELAY_MS = "300";

const STACK_ENV = {
  BACKFILL_STACK_DIR: STACK_DIR,
  BACKFILL_PORT_OFFSET: PORT_OFFSET,
  BACKFILL_DEMO_DELAY_MS: DEMO_DELAY_MS,
};

export interface FaultStack {
  env: Record<string, string>;
  apiUrl: string;
  functionsUrl: string;
  schedulerUrl: string;
  dbUrl: string;
  poolerUrl: string;
  secretKey: string;
  serviceRoleKey: string;
  anonKey: string;
  publishableKey: string;
  /** Direct connection (postgres), for setup and for asserting from the database. */
  sql: postgres.Sql;
  /** The typed client through the direct connection. */
  client: BackfillClient;
  /** The typed client through the gateway (supabase-js with the secret key). */
  rest: BackfillClient;
}

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(DENO, {
    args: ["run", "-A", "--no-prompt", join(REPO, "local/cli.ts"), ...args],
    cwd: REPO,
    env: STACK_ENV,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

// The stack's ports (546xx) lie in Linux's ephemeral range (32768–60999): while postgres is
// down, a client's outgoing connection (a worker's keep-alive to the gateway) can be given
// 127.0.0.1:54622 as its local port, and postgres then cannot bind it again. Reserving the
// range keeps the kernel from handing these ports out (root only; adds to what is there).
const RESERVED = "54600-54640";
function reservePorts(): void {
  const file = "/proc/sys/net/ipv4/ip_local_reserved_ports";
  try {
    const now = readFileSync(file, "utf8").trim();
    if (!now.split(",").includes(RESERVED)) {
      Deno.writeTextFileSync(file, now ? `${now},${RESERVED}` : RESERVED);
    }
  } catch { /* not root, or no such sysctl: the tests retry a busy port instead */ }
}

/** Brings back whatever is down (postgres, pgbouncer, gateway, functions…); retries a while. */
export async function ensureUp(): Promise<void> {
  reservePorts();
  let last = "";
  for (let i = 0; i < 20; i++) {
    const r = await cli("start");
    if (r.code === 0) return;
    last = r.err || r.out;
    console.error(`  (stack not up yet: ${last.trim().split("\n").at(-1)})`);
    // After a kill -9 of the postmaster its backends take a moment to notice and exit; until
    // then the old shared memory is in use and a new postmaster refuses to start.
    await sleep(1_000);
  }
  throw new Error(`the fault stack did not come back:\n${last}`);
}

// postgres.js 3.4 under Deno can throw from a timer when a connection dies mid-write, and
// leave that pool with queries never sent (the bug local/gateway.ts survives): the tests'
// own pools see every fault too, so each is swapped for a fresh one when that happens.
const resilient: (() => void)[] = [];
globalThis.addEventListener("error", (e) => {
  if (!/reading 'write'/.test(String((e as ErrorEvent).error?.message))) return;
  e.preventDefault();
  for (const swap of resilient) swap();
});

/** A postgres.js pool (tagged template, unsafe, begin, end) that survives that bug. */
export function resilientPool(
  url: string,
  options: postgres.Options<Record<string, postgres.PostgresType>> = {},
): postgres.Sql {
  const make = () =>
    postgres(url, { max: 4, onnotice: () => {}, connect_timeout: 5, idle_timeout: 20, ...options });
  let pool = make();
  resilient.push(() => {
    const old = pool;
    pool = make();
    old.end({ timeout: 1 }).catch(() => {});
  });
  const sql = ((...args: unknown[]) => (pool as any)(...args)) as unknown as postgres.Sql;
  return Object.assign(sql, {
    unsafe: (...a: Parameters<postgres.Sql["unsafe"]>) => pool.unsafe(...a),
    end: (...a: Parameters<postgres.Sql["end"]>) => pool.end(...a),
    begin: (...a: unknown[]) => (pool.begin as any)(...a),
  });
}

let shared: Promise<FaultStack> | undefined;

/** The fault stack, brought up (whatever an earlier test left down) and its env read. */
export async function faultStack(): Promise<FaultStack> {
  if (shared) {
    await ensureUp();
    return shared;
  }
  return await (shared = (async () => {
    await ensureUp();
    // Migrations added since the stack was made (start applies them only to a new cluster).
    const m = await cli("migrate");
    if (m.code !== 0) throw new Error(`fault stack migrate failed:\n${m.err}`);
    if (/applying|Applying/.test(m.err + m.out)) {
      // The gateway caches function signatures (as PostgREST's schema cache): reload it.
      Deno.kill(readPid(paths.functionPid("gateway")), "SIGTERM");
      await waitDead(readPid(paths.functionPid("gateway")));
      await ensureUp();
    }
    const r = await cli("status", "-o", "env");
    if (r.code !== 0) throw new Error(`fault stack status failed:\n${r.err}`);
    const env = Object.fromEntries(
      r.out.trim().split("\n").filter((l) => l.includes("=")).map((l) => {
        const i = l.indexOf("=");
        return [l.slice(0, i), l.slice(i + 1)];
      }),
    );
    // Fault tests kill postgres under this pool: it reconnects on the next query.
    const sql = resilientPool(env.DB_URL);
    const supabase = createClient(env.API_URL, env.SECRET_KEY, {
      auth: { persistSession: false, autoRefreshToken: false },
    });
    return {
      env,
      apiUrl: env.API_URL,
      functionsUrl: env.FUNCTIONS_URL,
      schedulerUrl: `${env.FUNCTIONS_URL}/backfill-scheduler`,
      dbUrl: env.DB_URL,
      poolerUrl: env.POOLER_URL,
      secretKey: env.SECRET_KEY,
      serviceRoleKey: env.SERVICE_ROLE_KEY,
      anonKey: env.ANON_KEY,
      publishableKey: env.PUBLISHABLE_KEY,
      sql,
      client: backfillClient(fromPostgres(sql)),
      rest: backfillClient(fromSupabase(supabase)),
    };
  })());
}

export async function stopFaultStack(): Promise<void> {
  const r = await cli("stop");
  if (r.code !== 0) throw new Error(`fault stack stop failed:\n${r.err}`);
}

// ---- Faults --------------------------------------------------------------------------------

export const paths = {
  postmasterPid: join(STACK_DIR, "db/postmaster.pid"),
  pgbouncerPid: join(STACK_DIR, "run/pgbouncer.pid"),
  functionPid: (name: string) => join(STACK_DIR, `run/${name}.pid`),
  log: (name: string) => join(STACK_DIR, `log/${name}.log`),
  logDir: join(STACK_DIR, "log"),
};

export function readPid(file: string): number {
  const pid = Number.parseInt(readFileSync(file, "utf8").split("\n")[0].trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no pid in ${file}`);
  return pid;
}

export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

async function waitDead(pid: number, timeoutMs = 30_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (alive(pid)) {
    if (performance.now() > deadline) throw new Error(`pid ${pid} still alive`);
    await sleep(50);
  }
}

/** `pg_ctl stop -m fast` as the postgres OS user: open transactions are rolled back. */
export async function stopPostgresFast(): Promise<void> {
  const r = await new Deno.Command("runuser", {
    args: [
      "-u",
      "postgres",
      "--",
      "/usr/lib/postgresql/15/bin/pg_ctl",
      "-D",
      join(STACK_DIR, "db"),
      "stop",
      "-m",
      "fast",
      "-w",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (r.code !== 0) throw new Error(`pg_ctl stop failed: ${new TextDecoder().decode(r.stderr)}`);
}

/** kill -9 of the postmaster (first line of postmaster.pid). */
export async function killPostmaster(): Promise<number> {
  const pid = readPid(paths.postmasterPid);
  Deno.kill(pid, "SIGKILL");
  await waitDead(pid);
  return pid;
}

/** kill -9 of PgBouncer. */
export async function killPgbouncer(): Promise<number> {
  const pid = readPid(paths.pgbouncerPid);
  Deno.kill(pid, "SIGKILL");
  await waitDead(pid);
  return pid;
}

/** kill -9 of a served function (backfill-worker, backfill-scheduler). */
export async function killFunction(name: string): Promise<number> {
  const pid = readPid(paths.functionPid(name));
  Deno.kill(pid, "SIGKILL");
  await waitDead(pid);
  return pid;
}

// ---- Logs ----------------------------------------------------------------------------------

/** The JSON events of a served function's log (or any stack log) about the given sources. */
export function logEvents(name: string, sources?: string[]): Record<string, any>[] {
  const file = paths.log(name);
  if (!existsSync(file)) return [];
  const wanted = sources && new Set(sources);
  return readFileSync(file, "utf8").split("\n").flatMap((line) => {
    if (!line.startsWith("{")) return [];
    try {
      const e = JSON.parse(line);
      return !wanted || wanted.has(e.source) ? [e] : [];
    } catch {
      return [];
    }
  });
}

/** Per `source month`, how many of the given event the served worker logged. */
export function countEvents(event: string, sources: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const e of logEvents("backfill-worker", sources)) {
    if (e.event !== event) continue;
    const key = `${e.source} ${e.month}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
