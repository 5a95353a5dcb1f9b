// Fault: Postgres restarted under a running workload, twice per test — stopped with
// `pg_ctl stop -m fast` (open transactions rolled back), or its postmaster killed -9 (crash
// recovery on restart) — in the middle of claims, heartbeats and completions. While it is
// down the served scheduler answers a JSON 5xx; once it is back, the served functions
// recover on their own (same pids, no restart of theirs) and every month still ends
// completed exactly once, none lost.

import assert from "node:assert/strict";
import {
  ensureUp,
  faultStack,
  killPostmaster,
  paths,
  readPid,
  sleep,
  stopPostgresFast,
} from "./_stack.ts";
import { inFlight, postScheduler, runWorkload, untilProgress, type Workload } from "./_workload.ts";

const FUNCTIONS = ["backfill-scheduler", "backfill-worker", "gateway"];
const pids = () => FUNCTIONS.map((n) => readPid(paths.functionPid(n)));

function postgresFault(kind: "fast" | "kill -9") {
  return async (w: Workload): Promise<number> => {
    const s = await faultStack();
    const before = pids();
    let faults = 0;
    for (const at of [0.2, 0.55]) {
      await untilProgress(w, at);
      const flying = await inFlight(s, w);
      w.faulty = true;
      if (kind === "fast") await stopPostgresFast();
      else await killPostmaster();
      faults++;
      // While it is down: the scheduler answers a JSON 5xx, and never a crash.
      const probe = await postScheduler(s, { limit: 5, source: w.sources[0], leaseSeconds: 10 });
      assert.ok(probe.json, `not JSON while postgres is down: ${probe.body}`);
      assert.ok(probe.status >= 500 && probe.status <= 503, `status ${probe.status} while down`);
      console.log(
        `  postgres ${kind} at ${Math.round(at * 100)}% (${flying} months in flight): ` +
          `scheduler answered ${probe.status} ${JSON.stringify(probe.body)}`,
      );
      await sleep(3_000);
      await ensureUp();
      w.faulty = false;
    }
    // The functions and the gateway were never restarted: they recovered on their own.
    assert.deepEqual(pids(), before, "a served function or the gateway was restarted");
    return faults;
  };
}

for (const kind of ["fast", "kill -9"] as const) {
  Deno.test({
    name:
      `fault: postgres restarted (${kind}) twice mid-run: JSON 5xx while down, every month completed exactly once`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const s = await faultStack();
      const figures = await runWorkload({
        name: `postgres ${kind}`,
        s,
        sourceCount: 4,
        from: "2000-01-01",
        to: "2005-12-01", // 4 × 72 = 288 months
        limit: 10,
        leaseSeconds: 10,
        lanes: 3,
        faults: postgresFault(kind),
      });
      assert.equal(figures.faults, 2);
      assert.ok(figures.answers5xx > 0, "no 5xx was seen while postgres was down");
    },
  });
}
