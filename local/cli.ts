// `deno task local <start|status|stop|migrate>`: the local stand-in for a Supabase project.
// Importable too: tests/run.ts and benchmarks call start() and read the URLs from config.ts.
import { STACK_DIR } from "./config.ts";
import { stackEnv } from "./env.ts";
import { install } from "./install.ts";
import { pgbouncer } from "./pgbouncer.ts";
import { postgres } from "./postgres.ts";
import { log, StackError } from "./proc.ts";
import { migrate, schema } from "./schema.ts";
import type { Service } from "./service.ts";
import { edgeFunctions, gateway, pgNetWorker } from "./daemons.ts";
import { vaultSecrets } from "./vault_secrets.ts";

export { migrate };
export { psql, psqlFile } from "./postgres.ts";
export * from "./config.ts";

/** In start order. */
export const services: Service[] = [
  postgres,
  schema,
  vaultSecrets,
  pgbouncer,
  gateway,
  pgNetWorker,
  ...edgeFunctions,
];

export interface ServiceStatus {
  name: string;
  up: boolean;
  detail: string;
}

export async function status(): Promise<ServiceStatus[]> {
  const out: ServiceStatus[] = [];
  for (const s of services) out.push({ name: s.name, up: await s.isUp(), detail: s.describe() });
  return out;
}

export async function isRunning(): Promise<boolean> {
  return (await status()).every((s) => s.up);
}

/** Idempotent: returns at once when everything already answers. */
export async function start(): Promise<void> {
  if (await isRunning()) return;
  await install();
  for (const s of services) {
    if (await s.isUp()) continue;
    try {
      await s.start();
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new StackError(`${s.name} failed to start: ${msg}`);
    }
  }
}

/** Reverse order, so nothing loses its backend while still serving. Idempotent. */
export async function stop(): Promise<void> {
  const errors: string[] = [];
  for (const s of [...services].reverse()) {
    try {
      await s.stop();
    } catch (e) {
      errors.push(`${s.name}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  if (errors.length) throw new StackError(`stop failed:\n${errors.join("\n")}`);
}

function printStatus(rows: ServiceStatus[]): void {
  const width = Math.max(...rows.map((r) => r.name.length));
  for (const r of rows) {
    console.log(`${r.name.padEnd(width)}  ${r.up ? "up  " : "DOWN"}  ${r.detail}`);
  }
}

function printEnv(): void {
  for (const [k, v] of Object.entries(stackEnv())) console.log(`${k}=${v}`);
}

const USAGE = `usage: deno task local <command>
  start            install what is missing, start the stack, apply stand-ins and migrations
  status [-o env]  show what runs (exit 1 if anything is down); -o env prints KEY=value lines
  stop             stop everything start started
  migrate          re-apply local/sql stand-ins and push new supabase/migrations`;

async function main(args: string[]): Promise<number> {
  const [cmd, ...rest] = args;
  switch (cmd) {
    case "start": {
      const t0 = Date.now();
      await start();
      printStatus(await status());
      log(`stack ready in ${((Date.now() - t0) / 1000).toFixed(1)}s  (${STACK_DIR})`);
      printEnv();
      return 0;
    }
    case "status": {
      const fmt = rest[0] === "-o"
        ? rest[1]
        : rest[0]?.startsWith("--output=")
        ? rest[0].slice(9)
        : "pretty";
      const rows = await status();
      const up = rows.every((r) => r.up);
      if (fmt === "env") printEnv();
      else if (fmt === "pretty" || fmt === undefined) printStatus(rows);
      else {
        console.error(`unknown output format ${fmt} (use -o env)`);
        return 2;
      }
      if (!up) log(`not running: ${rows.filter((r) => !r.up).map((r) => r.name).join(", ")}`);
      return up ? 0 : 1;
    }
    case "stop":
      await stop();
      log("stack stopped");
      return 0;
    case "migrate":
      if (!(await postgres.isUp())) {
        console.error("postgres is not running: deno task local start");
        return 1;
      }
      await migrate();
      return 0;
    default:
      console.error(USAGE);
      return cmd === undefined || cmd === "help" || cmd === "-h" ? 0 : 2;
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    const msg = e instanceof StackError ? e.message : (e as Error)?.stack ?? String(e);
    console.error(`[local] error: ${msg}`);
    Deno.exit(1);
  }
}
