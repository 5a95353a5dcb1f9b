// A fresh CI machine has only node/npm: everything else the stack runs is installed here, and
// only when missing, so that a warm machine starts in seconds.
import { existsSync } from "node:fs";
import { DENO_BIN, PG_BIN, PGBOUNCER_BIN, SUPABASE_BIN, TOOLS_DIR } from "./config.ts";
import { isRoot, log, run, runOk, StackError } from "./proc.ts";

// Debian 12's PostgreSQL is 15, matching supabase/config.toml's major_version.
const DEBIAN_PACKAGES = [
  "postgresql-15",
  "postgresql-client-15",
  "postgresql-15-cron",
  "postgresql-15-pgtap",
  "postgresql-15-plpgsql-check",
  "pgbouncer",
  "libtap-parser-sourcehandler-pgtap-perl", // pg_prove, since `supabase test db` needs Docker
];

// dpkg can list a package as known but not installed ("deinstall"); only "install ok installed"
// counts, and the binaries must really be there.
async function debInstalled(pkg: string): Promise<boolean> {
  const r = await run("dpkg-query", ["-W", "-f=${Status}", pkg]);
  return r.code === 0 && r.stdout.trim() === "install ok installed";
}

async function missingDebs(): Promise<string[]> {
  const missing: string[] = [];
  for (const pkg of DEBIAN_PACKAGES) if (!(await debInstalled(pkg))) missing.push(pkg);
  return missing;
}

export async function installDebs(): Promise<void> {
  const missing = await missingDebs();
  if (missing.length === 0) return;
  if (!isRoot()) {
    throw new StackError(
      `missing Debian packages: ${missing.join(" ")}\n` +
        `install them with: sudo apt-get install -y ${missing.join(" ")}`,
    );
  }
  log(`installing Debian packages: ${missing.join(" ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  await runOk("apt-get", ["update", "-qq"], { env });
  await runOk("apt-get", [
    "install",
    "-y",
    "-qq",
    "--no-install-recommends",
    ...missing,
  ], { env });
  for (const bin of [`${PG_BIN}/initdb`, `${PG_BIN}/pg_ctl`, `${PG_BIN}/psql`, PGBOUNCER_BIN]) {
    if (!existsSync(bin)) throw new StackError(`${bin} is still missing after apt-get install`);
  }
}

export async function installTools(): Promise<void> {
  if (existsSync(SUPABASE_BIN) && existsSync(DENO_BIN)) return;
  log("installing pinned npm tools (npm ci --prefix local/tools)");
  // The lockfile pins both versions; `npm ci` refuses to drift from it.
  await runOk("npm", ["ci", "--prefix", TOOLS_DIR, "--no-audit", "--no-fund"]);
  if (!existsSync(SUPABASE_BIN)) throw new StackError(`${SUPABASE_BIN} missing after npm ci`);
}

export async function install(): Promise<void> {
  await installDebs();
  await installTools();
}
