// The typed client of the backfill RPC API (shared/DESIGN.md, "The RPC API").
//
// Why it exists: the edge functions, the Deno tests, the benchmarks and command-line tools all
// call the same ten plpgsql functions, some through PostgREST (supabase-js) and some straight
// through Postgres (postgres.js, for services that hold a database URL). Spelling the calls out
// in each of them would let names, argument types and result shapes drift apart. Here each RPC
// is described once (SQL name, arguments, result schema), one generic implementation turns
// that table into camelCase methods, and a transport only has to run `fn(named args)`.
//
// Both transports return the same JSON (dates 'YYYY-MM-DD', timestamps as PostgREST prints
// them) and every result is checked with zod, so a contract change fails loudly here.
// Optional arguments left out are left out of the call, so the SQL defaults apply.

import { z } from "zod";
import type postgres from "postgres";
import type { SupabaseClient } from "@supabase/supabase-js";

// ---- Types -------------------------------------------------------------------------------

export type Claim = {
  source: string;
  month: string; // 'YYYY-MM-DD', first day of the month
  attempt: number;
  claimToken: string;
  leaseExpiresAt: string; // ISO 8601 timestamp with offset
};

export type PeekRow = { source: string; month: string; status: BackfillStatus; attempts: number };

export type ProgressRow = {
  source: string;
  total: number;
  pending: number;
  processing: number;
  retry: number;
  completed: number;
  failed: number;
  oldestDue: string | null;
  nextLeaseExpiry: string | null;
};

export type BackfillStatus = "pending" | "processing" | "retry" | "completed" | "failed";
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

export interface BackfillClient {
  enqueue(args: {
    source: string;
    from: string;
    to: string;
    priority?: number;
    maxAttempts?: number;
  }): Promise<number>;
  claim(
    args?: { limit?: number; workerId?: string; leaseSeconds?: number; source?: string },
  ): Promise<Claim[]>;
  heartbeat(claimToken: string, leaseSeconds?: number): Promise<string | null>;
  complete(claimToken: string, result?: Json): Promise<boolean>;
  /** Many claims in one call; each token fenced as in complete(). Results by position. */
  completeMany(
    claimTokens: string[],
    results?: Json[],
  ): Promise<{ claimToken: string; recorded: boolean }[]>;
  fail(claimToken: string, error: string, retryable?: boolean): Promise<"retry" | "failed" | null>;
  release(claimToken: string): Promise<boolean>;
  reapExpiredLeases(): Promise<number>;
  retryFailed(args?: { source?: string; from?: string; to?: string }): Promise<number>;
  peek(args?: { limit?: number; source?: string }): Promise<PeekRow[]>;
  progress(source?: string): Promise<ProgressRow[]>;
}

/** A failed RPC. `code` is the SQLSTATE (e.g. '22023', '42501'), or PostgREST's PGRSTxxx. */
export class BackfillRpcError extends Error {
  override name = "BackfillRpcError";
  constructor(
    readonly fn: string,
    readonly code: string,
    message: string,
    readonly details: string | null = null,
    readonly hint: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(`${fn}: ${message}`, options);
  }
}

/** Runs one RPC with named SQL arguments (`{ p_limit: 5 }`) and returns its JSON result. */
export interface BackfillTransport {
  call(fn: string, args: Record<string, unknown>): Promise<unknown>;
}

// ---- The RPC table -----------------------------------------------------------------------

const date = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "expected a date 'YYYY-MM-DD'");
const timestamp = z.iso.datetime({ offset: true });
const int = z.number().int();
const status = z.enum(["pending", "processing", "retry", "completed", "failed"]);

type Arg = readonly [camelName: string, sqlName: string, sqlType: string];
type Rpc = { fn: string; args: readonly Arg[]; setof: boolean; result: z.ZodType };

const claimRow = z.object({
  source: z.string(),
  month: date,
  attempt: int,
  claim_token: z.uuid(),
  lease_expires_at: timestamp,
}).transform((r): Claim => ({
  source: r.source,
  month: r.month,
  attempt: r.attempt,
  claimToken: r.claim_token,
  leaseExpiresAt: r.lease_expires_at,
}));

const progressRow = z.object({
  source: z.string(),
  total: int,
  pending: int,
  processing: int,
  retry: int,
  completed: int,
  failed: int,
  oldest_due: timestamp.nullable(),
  next_lease_expiry: timestamp.nullable(),
}).transform(({ oldest_due, next_lease_expiry, ...counts }): ProgressRow => ({
  ...counts,
  oldestDue: oldest_due,
  nextLeaseExpiry: next_lease_expiry,
}));

export const RPCS = {
  enqueue: {
    fn: "enqueue_backfill_months",
    args: [
      ["source", "p_source", "text"],
      ["from", "p_from", "date"],
      ["to", "p_to", "date"],
      ["priority", "p_priority", "integer"],
      ["maxAttempts", "p_max_attempts", "integer"],
    ],
    setof: false,
    result: int,
  },
  claim: {
    fn: "claim_backfill_months",
    args: [
      ["limit", "p_limit", "integer"],
      ["workerId", "p_worker_id", "text"],
      ["leaseSeconds", "p_lease_seconds", "integer"],
      ["source", "p_source", "text"],
    ],
    setof: true,
    result: z.array(claimRow),
  },
  heartbeat: {
    fn: "heartbeat_backfill_month",
    args: [["claimToken", "p_claim_token", "uuid"], ["leaseSeconds", "p_lease_seconds", "integer"]],
    setof: false,
    result: timestamp.nullable(),
  },
  complete: {
    fn: "complete_backfill_month",
    args: [["claimToken", "p_claim_token", "uuid"], ["result", "p_result", "jsonb"]],
    setof: false,
    result: z.boolean(),
  },
  completeMany: {
    fn: "complete_backfill_months",
    args: [["claimTokens", "p_claim_tokens", "uuid[]"], ["results", "p_results", "jsonb[]"]],
    setof: true,
    result: z.array(
      z.object({ claim_token: z.uuid(), recorded: z.boolean() })
        .transform((r) => ({ claimToken: r.claim_token, recorded: r.recorded })),
    ),
  },
  fail: {
    fn: "fail_backfill_month",
    args: [
      ["claimToken", "p_claim_token", "uuid"],
      ["error", "p_error", "text"],
      ["retryable", "p_retryable", "boolean"],
    ],
    setof: false,
    result: z.enum(["retry", "failed"]).nullable(),
  },
  release: {
    fn: "release_backfill_month",
    args: [["claimToken", "p_claim_token", "uuid"]],
    setof: false,
    result: z.boolean(),
  },
  reapExpiredLeases: { fn: "reap_expired_backfill_leases", args: [], setof: false, result: int },
  retryFailed: {
    fn: "retry_failed_backfill_months",
    args: [["source", "p_source", "text"], ["from", "p_from", "date"], ["to", "p_to", "date"]],
    setof: false,
    result: int,
  },
  peek: {
    fn: "peek_backfill_months",
    args: [["limit", "p_limit", "integer"], ["source", "p_source", "text"]],
    setof: true,
    result: z.array(z.object({ source: z.string(), month: date, status, attempts: int })),
  },
  progress: {
    fn: "backfill_progress",
    args: [["source", "p_source", "text"]],
    setof: true,
    result: z.array(progressRow),
  },
} as const satisfies Record<keyof BackfillClient, Rpc>;

const BY_FN: ReadonlyMap<string, Rpc> = new Map(Object.values(RPCS).map((r) => [r.fn, r]));

// ---- The one implementation --------------------------------------------------------------

export function backfillClient(transport: BackfillTransport): BackfillClient {
  const run = async (name: keyof BackfillClient, camelArgs: Record<string, unknown> = {}) => {
    const rpc: Rpc = RPCS[name];
    const named: Record<string, unknown> = {};
    for (const [camel, sqlName] of rpc.args) {
      if (camelArgs[camel] !== undefined) named[sqlName] = camelArgs[camel];
    }
    const raw = await transport.call(rpc.fn, named);
    const parsed = rpc.result.safeParse(raw);
    if (!parsed.success) {
      throw new Error(
        `${rpc.fn} returned a result of the wrong shape: ${z.prettifyError(parsed.error)}\n` +
          `got: ${JSON.stringify(raw)?.slice(0, 500)}`,
      );
    }
    return parsed.data as any;
  };
  return {
    enqueue: (args) => run("enqueue", args),
    claim: (args = {}) => run("claim", args),
    heartbeat: (claimToken, leaseSeconds) => run("heartbeat", { claimToken, leaseSeconds }),
    complete: (claimToken, result) => run("complete", { claimToken, result }),
    completeMany: (claimTokens, results) => run("completeMany", { claimTokens, results }),
    fail: (claimToken, error, retryable) => run("fail", { claimToken, error, retryable }),
    release: (claimToken) => run("release", { claimToken }),
    reapExpiredLeases: () => run("reapExpiredLeases"),
    retryFailed: (args = {}) => run("retryFailed", args),
    peek: (args = {}) => run("peek", args),
    progress: (source) => run("progress", { source }),
  };
}

// ---- Transports --------------------------------------------------------------------------

/** Through PostgREST: `supabase.rpc(fn, { p_limit: … })`, as the caller's key's role. */
export function fromSupabase(supabase: Pick<SupabaseClient, "rpc">): BackfillTransport {
  return {
    async call(fn, args) {
      const { data, error } = await supabase.rpc(fn, args);
      if (error) {
        throw new BackfillRpcError(fn, error.code, error.message, error.details, error.hint, {
          cause: error,
        });
      }
      return data;
    },
  };
}

/**
 * Straight to Postgres through postgres.js (a `Sql`, or a `TransactionSql` inside
 * `sql.begin`). One statement per call, no prepared statement required: safe with
 * `prepare: false` behind PgBouncer / Supavisor in transaction mode. The result is built as
 * jsonb in SQL so that it is the JSON PostgREST would have sent. Runs as the connection's role.
 */
export function fromPostgres(sql: Pick<postgres.Sql, "unsafe">): BackfillTransport {
  return {
    async call(fn, args) {
      const rpc = BY_FN.get(fn);
      if (!rpc) throw new Error(`unknown backfill RPC ${fn}`);
      // The named arguments travel as one JSON text and are typed in SQL by json_to_record,
      // as PostgREST does: arrays, jsonb and wrong types (22P02) behave as through the API.
      const given = rpc.args.filter(([, sqlName]) => sqlName in args);
      const call = `public.${fn}(${given.map(([, n]) => `${n} => a.${n}`).join(", ")})`;
      const record = given.length
        ? `json_to_record($1::text::json) as a(${given.map(([, n, t]) => `${n} ${t}`).join(", ")})`
        : null;
      const text = rpc.setof
        ? `select coalesce(jsonb_agg(t), '[]'::jsonb) as v from ${
          record ? `${record}, ` : ""
        }lateral ${call} t`
        : `select to_jsonb(${call}) as v${record ? ` from ${record}` : ""}`;
      const params = given.length ? [JSON.stringify(args)] : [];
      try {
        const [row] = await sql.unsafe(text, params);
        return row.v;
      } catch (e) {
        const err = e as Partial<postgres.PostgresError>;
        if (typeof err?.code !== "string") throw e;
        // SQLSTATE for server errors; postgres.js' own code (CONNECTION_CLOSED, …) otherwise.
        throw new BackfillRpcError(
          fn,
          err.code,
          err.message ?? String(e),
          err.detail ?? null,
          err.hint ?? null,
          { cause: e },
        );
      }
    },
  };
}
