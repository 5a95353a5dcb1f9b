// Running commands and tracking daemons by pid file: shared by every service of the stack.
import { existsSync, readFileSync } from "node:fs";

export const PG_OS_USER = "postgres";

export class StackError extends Error {}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Run as the postgres OS user when we are root: postgres and pgbouncer refuse root. */
  asPostgres?: boolean;
  /** Echo output straight to the terminal instead of capturing it. */
  inherit?: boolean;
}

export const isRoot = (): boolean => Deno.uid() === 0;

export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  let argv = [cmd, ...args];
  if (opts.asPostgres && isRoot()) argv = ["runuser", "-u", PG_OS_USER, "--", ...argv];
  const io = opts.inherit ? "inherit" : "piped";
  let child;
  try {
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd: opts.cwd,
      env: opts.env,
      stdin: "null",
      stdout: io,
      stderr: io,
    }).spawn();
  } catch (e) {
    throw new StackError(`cannot run ${argv[0]}: ${(e as Error).message}`);
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: opts.inherit ? "" : dec.decode(out.stdout),
    stderr: opts.inherit ? "" : dec.decode(out.stderr),
  };
}

/** Like run, but a non-zero exit is an error that carries the command's own output. */
export async function runOk(cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    const detail = (r.stderr || r.stdout).trim().split("\n").slice(-20).join("\n");
    throw new StackError(`${cmd} ${args.join(" ")} exited with ${r.code}\n${detail}`);
  }
  return r.stdout;
}

export function log(msg: string): void {
  console.error(`[local] ${msg}`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll until check() is true; the error names what never came up. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(intervalMs);
  }
  throw new StackError(`${what} did not come up within ${timeoutMs / 1000}s`);
}

/** First line of a pid file (postmaster.pid and pgbouncer's pidfile both start with the pid). */
export function readPid(pidFile: string): number | null {
  if (!existsSync(pidFile)) return null;
  const pid = Number.parseInt(readFileSync(pidFile, "utf8").split("\n")[0].trim(), 10);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/** Alive and, when given, running the expected program: a stale pid may have been reused. */
export function pidAlive(pid: number, comm?: string): boolean {
  try {
    const name = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // A zombie has exited; only its parent's wait is missing.
    if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return false;
    return comm === undefined || name === comm;
  } catch {
    return false;
  }
}

export function pidFileAlive(pidFile: string, comm?: string): number | null {
  const pid = readPid(pidFile);
  return pid !== null && pidAlive(pid, comm) ? pid : null;
}

/** SIGTERM, wait, then SIGKILL: stop() must not hang on a stuck process. */
export async function killAndWait(pid: number, what: string, timeoutMs = 15_000): Promise<void> {
  try {
    Deno.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!pidAlive(pid)) return;
    await sleep(100);
  }
  log(`${what} (pid ${pid}) ignored SIGTERM; sending SIGKILL`);
  try {
    Deno.kill(pid, "SIGKILL");
  } catch { /* already gone */ }
  await sleep(200);
}

/**
 * Start a long-running program detached from this process (own session, output to a log file)
 * and record its pid: this is how the gateway and the served edge functions join the stack.
 */
export async function spawnDaemon(
  cmd: string,
  args: string[],
  opts: { pidFile: string; logFile: string; cwd?: string; env?: Record<string, string> },
): Promise<number> {
  // setsid + nohup via sh so that the child outlives `deno task local start`.
  const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const script = `exec ${[cmd, ...args].map(q).join(" ")} >>${q(opts.logFile)} 2>&1 </dev/null`;
  const r = await runOk("sh", [
    "-c",
    `setsid sh -c ${q(script)} & echo $! > ${q(opts.pidFile)}`,
  ], { cwd: opts.cwd, env: opts.env });
  void r;
  const pid = readPid(opts.pidFile);
  if (pid === null) throw new StackError(`could not start ${cmd}`);
  return pid;
}

/**
 * Fail early and by name when something else holds a port the stack needs. The stack's
 * ports (Supabase's 543xx) lie in Linux's ephemeral range, so a client connection or a
 * socket of a service just stopped may hold one for a moment: wait a little first.
 */
export async function assertPortFree(hostname: string, port: number, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      Deno.listen({ hostname, port }).close();
      return;
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse)) throw e;
      if (Date.now() > deadline) {
        throw new StackError(
          `port ${port} (${what}) is already in use by another process; ` +
            `find it with: ss -tanp 'sport = :${port}'`,
        );
      }
      await sleep(250);
    }
  }
}
