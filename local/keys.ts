// The local project's API keys, made once per stack (random, in .stack/keys.json) and
// shaped like Supabase's: publishable and secret keys, plus the legacy anon and
// service_role keys. The gateway maps each to the role PostgREST would run as.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { STACK_DIR } from "./config.ts";

export interface Keys {
  anonKey: string;
  publishableKey: string;
  serviceRoleKey: string;
  secretKey: string;
}

const KEYS_FILE = join(STACK_DIR, "keys.json");

const random = (prefix: string) =>
  `${prefix}${
    Array.from(crypto.getRandomValues(new Uint8Array(24)), (b) => b.toString(16).padStart(2, "0"))
      .join("")
  }`;

/** The stack's keys, made on first use. */
export function keys(): Keys {
  if (existsSync(KEYS_FILE)) return JSON.parse(readFileSync(KEYS_FILE, "utf8"));
  const made: Keys = {
    anonKey: random("local-anon-"),
    publishableKey: random("sb_publishable_"),
    serviceRoleKey: random("local-service-role-"),
    secretKey: random("sb_secret_"),
  };
  mkdirSync(STACK_DIR, { recursive: true });
  writeFileSync(KEYS_FILE, JSON.stringify(made, null, 2), { mode: 0o600 });
  return made;
}

/** The database role a key stands for, or undefined for an unknown key. */
export function roleForKey(k: Keys, key: string): "anon" | "service_role" | undefined {
  if (key === k.secretKey || key === k.serviceRoleKey) return "service_role";
  if (key === k.anonKey || key === k.publishableKey) return "anon";
  return undefined;
}
