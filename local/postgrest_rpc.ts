// LOCAL STAND-IN for PostgREST's `POST /rest/v1/rpc/<fn>`, just enough of it for the
// project: named JSON arguments, the call run as the caller's role (`set local role`,
// as PostgREST does after authenticating), the result as PostgREST shapes it (a
// set-returning function gives an array of rows, any other its value), and errors in
// PostgREST's JSON shape ({code, message, details, hint}) with its HTTP status mapping.

import type postgres from "postgres";

interface FunctionInfo {
  args: { name: string; type: string; hasDefault: boolean }[];
  setof: boolean;
}

export type RpcResult = { status: number; body: unknown };

/** PostgREST's HTTP status for a SQLSTATE (docs: "HTTP status codes"). */
export function httpStatusOf(code: string, role: string): number {
  if (code === "42501") return role === "anon" ? 401 : 403;
  if (code === "42883" || code === "42P01") return 404;
  if (code === "23503" || code === "23505") return 409;
  if (code === "25006") return 405;
  if (code === "P0001") return 400;
  if (/^(08|53)/.test(code)) return 503;
  if (/^(0L|0P|28)/.test(code)) return 403;
  if (/^(09|25|2D|38|39|3B|40|54|55|57|58|F0|HV|P0|XX|42P17)/.test(code)) return 500;
  return 400;
}

export function createRpcHandler(sql: postgres.Sql) {
  const cache = new Map<string, FunctionInfo[]>();

  async function describe(fn: string): Promise<FunctionInfo[]> {
    const known = cache.get(fn);
    if (known) return known;
    const rows = await sql<{ args: FunctionInfo["args"]; setof: boolean }[]>`
      select p.proretset as setof,
             coalesce((select jsonb_agg(jsonb_build_object(
                        'name', p.proargnames[i], 'type', format_type(p.proargtypes[i - 1], null),
                        'hasDefault', i > p.pronargs - p.pronargdefaults) order by i)
                       from generate_series(1, p.pronargs) i), '[]') as args
      from pg_catalog.pg_proc p
      where p.pronamespace = 'public'::regnamespace and p.proname = ${fn}`;
    cache.set(fn, rows);
    return rows;
  }

  return async function callRpc(fn: string, role: string, input: unknown): Promise<RpcResult> {
    const args = (input ?? {}) as Record<string, unknown>;
    if (typeof args !== "object" || Array.isArray(args)) {
      return {
        status: 400,
        body: pgrstError("PGRST102", "Expected a JSON object of named arguments"),
      };
    }
    const given = Object.keys(args);
    let candidates: FunctionInfo[];
    try {
      candidates = await describe(fn);
    } catch (e) {
      // Looking the function up needs the database too: down is PostgREST's 503, not a crash.
      return databaseError(e as postgres.PostgresError, role);
    }
    const match = candidates.find((f) =>
      given.every((g) => f.args.some((a) => a.name === g)) &&
      f.args.every((a) => a.hasDefault || given.includes(a.name))
    );
    if (!match) {
      return {
        status: 404,
        body: pgrstError(
          "PGRST202",
          `Could not find the function public.${fn}(${
            given.sort().join(", ")
          }) in the schema cache`,
          "Searched for the function with the given named arguments.",
        ),
      };
    }
    // As PostgREST does: the named arguments travel as one JSON text, typed in SQL by
    // json_to_record, so arrays and jsonb arrive whole and a value of the wrong type is
    // Postgres' own 22P02.
    const used = match.args.filter((a) => given.includes(a.name));
    const record = used.length
      ? `json_to_record($1::text::json) as a(${
        used.map((a) => `"${a.name}" ${a.type}`).join(", ")
      })`
      : null;
    const call = `public.${fn}(${used.map((a) => `"${a.name}" => a."${a.name}"`).join(", ")})`;
    const text = match.setof
      ? `select coalesce(json_agg(t), '[]'::json) as v from ${
        record ? `${record}, ` : ""
      }lateral ${call} t`
      : `select to_json(${call}) as v${record ? ` from ${record}` : ""}`;
    const params = used.length ? [JSON.stringify(args)] : [];
    try {
      const rows = await sql.begin(async (tx) => {
        await tx.unsafe(`set local role ${role}`);
        return await tx.unsafe(text, params);
      });
      return { status: 200, body: rows[0].v };
    } catch (e) {
      return databaseError(e as postgres.PostgresError, role);
    }
  };
}

function databaseError(err: postgres.PostgresError, role: string): RpcResult {
  if (typeof err.code === "string" && /^[0-9A-Z]{5}$/.test(err.code)) {
    return {
      status: httpStatusOf(err.code, role),
      body: {
        code: err.code,
        message: err.message,
        details: err.detail ?? null,
        hint: err.hint ?? null,
      },
    };
  }
  return {
    status: 503,
    body: pgrstError("PGRST000", `Could not connect with the database: ${err.message}`),
  };
}

export function pgrstError(code: string, message: string, hint: string | null = null) {
  return { code, message, details: null, hint };
}
