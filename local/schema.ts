// Makes the fresh database look like a Supabase project (local stand-ins from local/sql/), then
// applies the project's migrations exactly as they would be applied to a hosted project.
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLI_DB_URL, paths, REPO_ROOT, SQL_DIR, SUPABASE_BIN } from "./config.ts";
import { log, run, StackError } from "./proc.ts";
import { postgres, psqlFile } from "./postgres.ts";
import type { Service } from "./service.ts";

// Order matters: the roles must exist before the stand-ins grant to or revoke from them.
export const STANDIN_FILES = ["supabase_roles.sql", "vault_standin.sql", "pg_net_standin.sql"];

export async function applyStandins(): Promise<void> {
  for (const f of STANDIN_FILES) {
    log(`applying local stand-in local/sql/${f}`);
    await psqlFile(join(SQL_DIR, f));
  }
}

/** `supabase db push`: records versions, so only migrations not yet applied run. */
export async function pushMigrations(): Promise<void> {
  const dir = join(REPO_ROOT, "supabase", "migrations");
  const count = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".sql")).length : 0;
  log(`supabase db push (${count} migration file(s) in supabase/migrations)`);
  const r = await run(SUPABASE_BIN, ["db", "push", "--db-url", CLI_DB_URL, "--yes"], {
    cwd: REPO_ROOT,
  });
  const out = `${r.stderr}${r.stdout}`.trim();
  if (r.code !== 0) throw new StackError(`supabase db push failed (exit ${r.code}):\n${out}`);
  if (out) console.error(out.split("\n").map((l) => `  ${l}`).join("\n"));
}

/** Stand-ins, then migrations; safe to repeat on a database that already has both. */
export async function migrate(): Promise<void> {
  rmSync(paths.schemaMarker, { force: true });
  await applyStandins();
  await pushMigrations();
  writeFileSync(paths.schemaMarker, `${new Date().toISOString()}\n`);
}

// Modelled as a service so that a setup that failed halfway is redone by the next start, and so
// that `stop; start` picks up new migrations (stop clears the marker).
export const schema: Service = {
  name: "schema",
  describe: () => "local stand-ins (local/sql) + supabase/migrations applied",
  async isUp() {
    return existsSync(paths.schemaMarker) && await postgres.isUp();
  },
  start: migrate,
  stop() {
    rmSync(paths.schemaMarker, { force: true });
    return Promise.resolve();
  },
};
