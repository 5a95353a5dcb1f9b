// LOCAL STAND-IN for the Supabase API gateway at API_URL (Kong, in a real project):
//   /rest/v1/rpc/<fn>     → the PostgREST stand-in (postgrest_rpc.ts), as the key's role
//   /functions/v1/<name>  → the edge function served on its own port (FUNCTION_PORTS)
// Run as a daemon by `deno task local start`.

import type postgres from "postgres";
import { API_PORT, FUNCTION_PORTS } from "./config.ts";
import { survivingPool } from "./surviving_pool.ts";
import { keys, roleForKey } from "./keys.ts";
import { createRpcHandler, pgrstError } from "./postgrest_rpc.ts";

const json = (body: unknown, status: number) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

const RPC_DEADLINE_MS = 10_000;

export function createGateway(sql: postgres.Sql) {
  const callRpc = createRpcHandler(sql);
  const k = keys();

  async function rest(req: Request, fn: string): Promise<Response> {
    if (req.method !== "POST") {
      return json(pgrstError("PGRST117", `Unsupported HTTP method: ${req.method}`), 405);
    }
    const key = req.headers.get("apikey") ??
      req.headers.get("authorization")?.replace(/^Bearer /, "");
    if (!key) return json({ message: "No API key found in request" }, 401);
    const role = roleForKey(k, key);
    if (!role) return json({ message: "Invalid API key" }, 401);
    let args: unknown;
    try {
      const text = await req.text();
      args = text.trim() ? JSON.parse(text) : {};
    } catch {
      return json(pgrstError("PGRST102", "Empty or invalid json"), 400);
    }
    // PostgREST gives up on a call that cannot get a database connection in time (its pool
    // acquisition timeout, 504 PGRST003) rather than hold the caller forever; so does this.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<{ status: number; body: unknown }>((resolve) => {
      timer = setTimeout(() =>
        resolve({
          status: 504,
          body: pgrstError("PGRST003", "Timed out acquiring connection from connection pool."),
        }), RPC_DEADLINE_MS);
    });
    const { status, body } = await Promise.race([callRpc(fn, role, args), deadline])
      .finally(() => clearTimeout(timer));
    return json(body, status);
  }

  async function functions(
    req: Request,
    name: string,
    rest: string,
    search: string,
  ): Promise<Response> {
    const port = FUNCTION_PORTS[name];
    if (!port) return json({ code: "NOT_FOUND", message: `Function not found: ${name}` }, 404);
    try {
      return await fetch(`http://127.0.0.1:${port}${rest}${search}`, {
        method: req.method,
        headers: req.headers,
        body: req.method === "GET" || req.method === "HEAD" ? undefined : await req.arrayBuffer(),
        redirect: "manual",
      });
    } catch (e) {
      return json({
        code: "BOOT_ERROR",
        message: `Function ${name} is not answering: ${(e as Error).message}`,
      }, 503);
    }
  }

  return async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const rpc = url.pathname.match(/^\/rest\/v1\/rpc\/([A-Za-z0-9_]+)$/);
    if (rpc) return await rest(req, rpc[1]);
    const fn = url.pathname.match(/^\/functions\/v1\/([A-Za-z0-9_-]+)(\/.*)?$/);
    if (fn) return await functions(req, fn[1], fn[2] ?? "/", url.search);
    if (url.pathname === "/health") return json({ ok: true }, 200);
    return json({ message: "no route" }, 404);
  };
}

if (import.meta.main) {
  let handle: (req: Request) => Promise<Response>;
  const sql = survivingPool({ max: 20 }, (fresh) => handle = createGateway(fresh));
  handle = createGateway(sql());
  Deno.serve({ hostname: "127.0.0.1", port: API_PORT, onListen: () => {} }, (req) => handle(req));
}
