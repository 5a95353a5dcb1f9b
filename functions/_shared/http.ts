// JSON responses and the checks every backfill function makes before doing anything:
// method, key, body. Each refusal is a JSON 4xx that changes nothing.

import type { z } from "zod";
import { isAuthorized } from "./auth.ts";

export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** Field-by-field reasons a body was refused, e.g. `{ field: "limit", problem: "…" }`. */
export function fieldErrors(error: z.ZodError): { field: string; problem: string }[] {
  return error.issues.map((issue) => ({
    field: issue.path.length
      ? issue.path.join(".")
      : (issue.code === "unrecognized_keys"
        ? (issue as { keys?: string[] }).keys?.join(", ") ?? "(body)"
        : "(body)"),
    problem: issue.message,
  }));
}

export type Accepted<T> = { ok: true; body: T } | { ok: false; response: Response };

/**
 * POST only (405 with Allow otherwise), the accepted key (401), and a JSON body that
 * `schema` accepts (400 naming each bad field; an empty body counts as `{}`).
 */
export async function acceptRequest<S extends z.ZodType>(
  req: Request,
  accepted: string | undefined,
  schema: S,
): Promise<Accepted<z.infer<S>>> {
  if (req.method !== "POST") {
    return { ok: false, response: json({ error: "method not allowed" }, 405, { allow: "POST" }) };
  }
  if (!(await isAuthorized(req.headers, accepted))) {
    return { ok: false, response: json({ error: "unauthorized" }, 401) };
  }
  let raw: unknown = {};
  try {
    const text = await req.text();
    if (text.trim() !== "") raw = JSON.parse(text);
  } catch {
    return { ok: false, response: json({ error: "body is not valid JSON" }, 400) };
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    return {
      ok: false,
      response: json({ error: "invalid body", fields: fieldErrors(parsed.error) }, 400),
    };
  }
  return { ok: true, body: parsed.data };
}
