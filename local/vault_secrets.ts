// Seeds the Vault secrets that schedule_backfill_scheduler's cron job reads at run
// time: where the scheduler function is, and the key it accepts. On hosted Supabase
// an operator stores these once (README, "Deploying"); here they follow the stack.

import { FUNCTIONS_URL } from "./config.ts";
import { keys } from "./keys.ts";
import { psql } from "./postgres.ts";
import type { Service } from "./service.ts";

export const SCHEDULER_URL_SECRET = "backfill_scheduler_url";
export const SCHEDULER_KEY_SECRET = "backfill_scheduler_key";

const wanted = () => ({
  [SCHEDULER_URL_SECRET]: `${FUNCTIONS_URL}/backfill-scheduler`,
  [SCHEDULER_KEY_SECRET]: keys().secretKey,
});

// Keys and the URL are plain [A-Za-z0-9_:/.-], so quoting them as literals is safe.
const literal = (s: string) => `'${s.replaceAll("'", "''")}'`;

export const vaultSecrets: Service = {
  name: "vault",
  describe: () => `secrets ${SCHEDULER_URL_SECRET}, ${SCHEDULER_KEY_SECRET} (Vault stand-in)`,
  async isUp() {
    const pairs = Object.entries(wanted()).map(([n, v]) => `(${literal(n)}, ${literal(v)})`);
    const out = await psql(
      `select count(*) from vault.decrypted_secrets where (name, decrypted_secret) in (${
        pairs.join(", ")
      })`,
    ).catch(() => "");
    return out.trim() === "2";
  },
  async start() {
    for (const [name, value] of Object.entries(wanted())) {
      await psql(`delete from vault.secrets where name = ${literal(name)};
                  select vault.create_secret(${literal(value)}, ${literal(name)});`);
    }
  },
  stop: () => Promise.resolve(),
};
