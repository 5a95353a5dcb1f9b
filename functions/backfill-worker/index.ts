// backfill-worker edge function: accepts one claim from backfill-scheduler (or any
// holder of the key), answers 202, and processes the month in the background.

import { acceptedKey } from "../_shared/auth.ts";
import { backfillClient, fromSupabase } from "../_shared/backfill_client.ts";
import { processEnv, supabaseFromEnv } from "../_shared/project.ts";
import { defaultRegistry, processorLookup } from "./processors/index.ts";
import { createWorker } from "./worker.ts";

const supabase = supabaseFromEnv(processEnv);
const worker = createWorker({
  client: backfillClient(fromSupabase(supabase)),
  acceptedKey: acceptedKey(processEnv),
  processorFor: processorLookup(defaultRegistry(supabase, {
    demoDelayMs: Number(processEnv("BACKFILL_DEMO_DELAY_MS") ?? 0),
  })),
});

Deno.serve(worker.handle);
