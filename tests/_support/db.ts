// Database connections for the Deno tests.
//
// DB_URL is the direct Postgres URL, POOLER_URL the PgBouncer one (transaction mode); the
// defaults are the local stack's (`deno task local status -o env`).
//
// The tests connect as `postgres`, not as service_role. Setting the role per connection
// (`options: '-c role=service_role'`) would be session state, which a transaction pooler does
// not carry from one transaction to the next. The RPCs are SECURITY INVOKER, so what they do
// is the same for either role; who may call them (service_role only, 42501 for anon and
// authenticated) is proven by the pgTAP suite in supabase/tests/.

import postgres from "postgres";
import {
  type BackfillClient,
  backfillClient,
  fromPostgres,
} from "../../functions/_shared/backfill_client.ts";

export const DB_URL = Deno.env.get("DB_URL") ??
  "postgresql://postgres:postgres@127.0.0.1:54322/postgres";
export const POOLER_URL = Deno.env.get("POOLER_URL") ??
  "postgresql://postgres:postgres@127.0.0.1:54329/postgres";

export type Sql = postgres.Sql;
export type Tx = postgres.TransactionSql;

/** A postgres.js pool; through the pooler, never a prepared statement. */
export function connect(
  { pooler = false, max = 1, ...options }:
    & { pooler?: boolean }
    & postgres.Options<Record<string, postgres.PostgresType>> = {},
): Sql {
  return postgres(pooler ? POOLER_URL : DB_URL, {
    max,
    prepare: !pooler,
    onnotice: () => {},
    connect_timeout: 10,
    ...options,
  });
}

export type Db = { sql: Sql; client: BackfillClient; close: () => Promise<void> };

/** One connection pool and a backfill client over it. */
export function open(options: Parameters<typeof connect>[0] = {}): Db {
  const sql = connect(options);
  return { sql, client: backfillClient(fromPostgres(sql)), close: () => sql.end({ timeout: 5 }) };
}

/** A source name no other test uses. */
export function uniqueSource(): string {
  return `t-${crypto.randomUUID()}`;
}

/** Removes a test's rows. */
export async function removeSource(sql: Sql, source: string): Promise<void> {
  await sql`delete from public.backfill_log where source = ${source}`;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
