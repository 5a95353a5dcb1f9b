// The registry of processors: what processing a month means, per source.
//
// A source is handled by the entry named like it, or else by the entry named like its
// part before the first ':' — so "calendar:eu" and "calendar:us" are two sources (two
// backfills, tracked apart) run by the same "calendar" processor. A source with no
// entry fails at once, not retryably: no retry would find a processor.

import type { SupabaseClient } from "@supabase/supabase-js";
import type { Processor } from "../worker.ts";
import { calendarProcessor } from "./calendar.ts";

export type Registry = Record<string, Processor>;

export function defaultRegistry(
  supabase: Pick<SupabaseClient, "rpc">,
  options: { demoDelayMs?: number } = {},
): Registry {
  return { calendar: calendarProcessor(supabase, { delayMs: options.demoDelayMs }) };
}

export function processorLookup(registry: Registry): (source: string) => Processor | undefined {
  return (source) => {
    const name = Object.hasOwn(registry, source) ? source : source.split(":")[0];
    return Object.hasOwn(registry, name) ? registry[name] : undefined;
  };
}
