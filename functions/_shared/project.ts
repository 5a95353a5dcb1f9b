// What an edge function knows about the Supabase project it runs in, from the
// environment the Edge Runtime gives it (or the local stack's stand-in for it).

import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import { type BackfillClient, backfillClient, fromSupabase } from "./backfill_client.ts";

export type Env = (name: string) => string | undefined;

export const processEnv: Env = (name) => Deno.env.get(name);

/**
 * The project's secret key: `SUPABASE_SECRET_KEYS` (JSON, its `default`) or the legacy
 * `SUPABASE_SERVICE_ROLE_KEY`. It is both what the RPCs are called with and, unless
 * BACKFILL_SCHEDULER_SECRET is set, what callers must present.
 */
export function projectSecretKey(env: Env): string | undefined {
  const secretKeys = env("SUPABASE_SECRET_KEYS");
  if (secretKeys) {
    try {
      const parsed = JSON.parse(secretKeys);
      if (typeof parsed?.default === "string" && parsed.default) return parsed.default;
    } catch {
      // Not JSON: fall back to the legacy key rather than fail open.
    }
  }
  return env("SUPABASE_SERVICE_ROLE_KEY") || undefined;
}

export function requireEnv(env: Env, name: string): string {
  const value = env(name);
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/** supabase-js for this project, with the secret key: it runs the RPCs as service_role. */
export function supabaseFromEnv(env: Env): SupabaseClient {
  const key = projectSecretKey(env);
  if (!key) throw new Error("neither SUPABASE_SECRET_KEYS nor SUPABASE_SERVICE_ROLE_KEY is set");
  return createClient(requireEnv(env, "SUPABASE_URL"), key, {
    auth: { persistSession: false, autoRefreshToken: false },
  });
}

/** The RPC client the functions use: through PostgREST, over supabaseFromEnv. */
export function backfillClientFromEnv(env: Env): BackfillClient {
  return backfillClient(fromSupabase(supabaseFromEnv(env)));
}

/** Where a sibling function of this project is served: `<SUPABASE_URL>/functions/v1/<name>`. */
export function functionUrl(env: Env, name: string): string {
  return `${requireEnv(env, "SUPABASE_URL").replace(/\/$/, "")}/functions/v1/${name}`;
}
