// What a child process (psql, pg_prove, tests, the demo) needs to reach the stack:
// `deno task local status -o env` prints exactly this.

import {
  API_URL,
  DB_HOST,
  DB_NAME,
  DB_PASSWORD,
  DB_PORT,
  DB_URL,
  DB_USER,
  FUNCTIONS_URL,
  POOLER_URL,
  STACK_DIR,
} from "./config.ts";
import { keys } from "./keys.ts";

export function stackEnv(): Record<string, string> {
  const k = keys();
  return {
    API_URL,
    FUNCTIONS_URL,
    DB_URL,
    POOLER_URL,
    ANON_KEY: k.anonKey,
    PUBLISHABLE_KEY: k.publishableKey,
    SERVICE_ROLE_KEY: k.serviceRoleKey,
    SECRET_KEY: k.secretKey,
    STACK_DIR,
    PGHOST: DB_HOST,
    PGPORT: String(DB_PORT),
    PGUSER: DB_USER,
    PGPASSWORD: DB_PASSWORD,
    PGDATABASE: DB_NAME,
    PGSSLMODE: "disable",
  };
}
