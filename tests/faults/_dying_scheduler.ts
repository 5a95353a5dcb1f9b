// A scheduler process that dies (SIGKILL, its own) right after its claim has committed and
// before it dispatches anything: the real createScheduler over the fault stack's gateway,
// whose first hand-over kills the process. Run by processes_test.ts.
//   deno run -A tests/faults/_dying_scheduler.ts <API_URL> <SECRET_KEY> <source> <limit>

import { createClient } from "@supabase/supabase-js";
import { backfillClient, fromSupabase } from "../../functions/_shared/backfill_client.ts";
import { createScheduler } from "../../functions/backfill-scheduler/scheduler.ts";

const [apiUrl, key, source, limit] = Deno.args;
const handle = createScheduler({
  client: backfillClient(
    fromSupabase(createClient(apiUrl, key, { auth: { persistSession: false } })),
  ),
  acceptedKey: "dying",
  workerUrl: "http://127.0.0.1:9/never",
  workerKey: undefined,
  fetch: () => {
    Deno.kill(Deno.pid, "SIGKILL");
    return new Promise<Response>(() => {});
  },
});
await handle(
  new Request("http://scheduler/", {
    method: "POST",
    headers: { apikey: "dying" },
    body: JSON.stringify({ limit: Number(limit), source, leaseSeconds: 10 }),
  }),
);
console.error("the scheduler did not die");
Deno.exit(3);
