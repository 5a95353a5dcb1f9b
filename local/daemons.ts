// The stack's own Deno processes, each a Service tracked by pid file: the gateway, the
// pg_net delivery worker, and one `deno run` per edge function with the environment
// the Edge Runtime would give it.

import { join } from "node:path";
import {
  API_PORT,
  API_URL,
  DB_URL,
  DENO_BIN,
  FUNCTION_PORTS,
  FUNCTIONS_URL,
  paths,
  REPO_ROOT,
} from "./config.ts";
import { keys } from "./keys.ts";
import {
  assertPortFree,
  killAndWait,
  log,
  pidFileAlive,
  spawnDaemon,
  StackError,
  waitFor,
} from "./proc.ts";
import type { Service } from "./service.ts";

interface Daemon {
  name: string;
  script: string;
  port?: number;
  env?: () => Record<string, string>;
  describe: string;
}

async function answersHttp(port: number): Promise<boolean> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1000) });
    await r.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

function daemon(d: Daemon): Service {
  const pidFile = join(paths.run, `${d.name}.pid`);
  const logFile = join(paths.log, `${d.name}.log`);
  const alive = () => pidFileAlive(pidFile) !== null;
  return {
    name: d.name,
    describe: () => `${d.describe}  (log ${logFile})`,
    async isUp() {
      return alive() && (d.port === undefined || await answersHttp(d.port));
    },
    async start() {
      const stale = pidFileAlive(pidFile);
      if (stale !== null) await killAndWait(stale, d.name);
      if (d.port !== undefined) await assertPortFree("127.0.0.1", d.port, d.name);
      log(`starting ${d.name}`);
      await spawnDaemon(DENO_BIN, ["run", "-A", "--no-prompt", join(REPO_ROOT, d.script)], {
        pidFile,
        logFile,
        cwd: REPO_ROOT,
        env: d.env?.() ?? {},
      });
      try {
        await waitFor(
          d.name,
          async () => alive() && (d.port === undefined || await answersHttp(d.port)),
          60_000,
        );
      } catch (e) {
        throw new StackError(`${(e as Error).message}; see ${logFile}`);
      }
    },
    async stop() {
      const pid = pidFileAlive(pidFile);
      if (pid !== null) await killAndWait(pid, d.name);
    },
  };
}

/** What the Edge Runtime sets for a function of this project. */
export function functionEnv(name: string): Record<string, string> {
  const k = keys();
  return {
    SUPABASE_URL: API_URL,
    SUPABASE_ANON_KEY: k.anonKey,
    SUPABASE_SERVICE_ROLE_KEY: k.serviceRoleKey,
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: k.secretKey }),
    SUPABASE_PUBLISHABLE_KEYS: JSON.stringify({ default: k.publishableKey }),
    SUPABASE_DB_URL: DB_URL,
    BACKFILL_DEMO_DELAY_MS: Deno.env.get("BACKFILL_DEMO_DELAY_MS") ?? "300",
    DENO_SERVE_ADDRESS: `tcp:127.0.0.1:${FUNCTION_PORTS[name]}`,
  };
}

export const gateway = daemon({
  name: "gateway",
  script: "local/gateway.ts",
  port: API_PORT,
  describe: `${API_URL}  (PostgREST /rest/v1/rpc and /functions/v1 stand-in)`,
});

export const pgNetWorker = daemon({
  name: "pg_net",
  script: "local/pg_net_worker.ts",
  describe: "delivers net.http_post requests after commit (pg_net stand-in)",
});

export const edgeFunctions: Service[] = Object.entries(FUNCTION_PORTS).map(([name, port]) =>
  daemon({
    name,
    script: `functions/${name}/index.ts`,
    port,
    env: () => functionEnv(name),
    describe: `${FUNCTIONS_URL}/${name}  (deno run on :${port})`,
  })
);
