// backfill-scheduler edge function: fired by pg_cron through pg_net (or by anyone
// holding the key), claims due months and dispatches each to backfill-worker.

import { acceptedKey } from "../_shared/auth.ts";
import { backfillClientFromEnv, functionUrl, processEnv } from "../_shared/project.ts";
import { createScheduler } from "./scheduler.ts";

const key = acceptedKey(processEnv);

Deno.serve(createScheduler({
  client: backfillClientFromEnv(processEnv),
  acceptedKey: key,
  workerUrl: processEnv("BACKFILL_WORKER_URL") ?? functionUrl(processEnv, "backfill-worker"),
  // backfill-worker accepts the same key.
  workerKey: key,
}));
