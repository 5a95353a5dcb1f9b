// The worker: takes one claim, answers 202 at once, and processes the month in the
// background while it heartbeats the lease; then completes or fails it with the token.
//
// Its first act is a heartbeat, before any work: that marks the claim started, so a
// scheduler that gave up on the hand-over can no longer release it; and if the
// scheduler did release it first, the heartbeat finds the claim gone and the month is
// never started here. Each later heartbeat that finds the claim gone (lease expired and
// taken over) aborts the processor through its AbortSignal, and nothing is recorded:
// the token is stale, so the database would refuse it anyway.

import { z } from "zod";
import type { BackfillClient, Json } from "../_shared/backfill_client.ts";
import { acceptRequest, json } from "../_shared/http.ts";
import { errorMessage, log } from "../_shared/log.ts";
import { persistently } from "../_shared/retry.ts";

export const WorkerRequest = z.strictObject({
  source: z.string().min(1).max(200),
  month: z.string().regex(
    /^\d{4}-(0[1-9]|1[0-2])-01$/,
    "expected the first day of a month, YYYY-MM-01",
  ),
  attempt: z.number().int().min(1),
  claimToken: z.uuid(),
  leaseExpiresAt: z.string().optional(),
  leaseSeconds: z.number().int().min(10).max(86400).default(900),
});
export type WorkerRequest = z.infer<typeof WorkerRequest>;

/** One month of one source to process; `signal` aborts when the claim is lost. */
export interface MonthJob {
  source: string;
  month: string;
  attempt: number;
  claimToken: string;
  signal: AbortSignal;
}

/** Processes one month and returns its result (stored on the row). Throw to fail it. */
export type Processor = (job: MonthJob) => Promise<Json>;

/** Thrown by a processor for an error that retrying cannot fix: the month fails at once. */
export class NonRetryableError extends Error {
  override name = "NonRetryableError";
}

export interface WorkerConfig {
  client: BackfillClient;
  acceptedKey: string | undefined;
  processorFor: (source: string) => Processor | undefined;
  /** Heartbeat every leaseSeconds × this; a third leaves two chances before expiry. */
  heartbeatFraction?: number;
}

export interface Worker {
  handle(req: Request): Promise<Response>;
  /** Resolves when every month accepted so far has finished (tests, shutdown). */
  idle(): Promise<void>;
}

export function createWorker(config: WorkerConfig): Worker {
  const inFlight = new Set<Promise<void>>();
  const heartbeatFraction = config.heartbeatFraction ?? 1 / 3;

  async function processMonth(claim: WorkerRequest): Promise<void> {
    const { client } = config;
    const { claimToken, leaseSeconds } = claim;
    const about = { source: claim.source, month: claim.month, attempt: claim.attempt };

    if (!(await client.heartbeat(claimToken, leaseSeconds))) {
      log("claim_lost_before_start", about);
      return;
    }
    log("month_started", about);

    const lost = new AbortController();
    const timer = setInterval(async () => {
      try {
        if (!(await client.heartbeat(claimToken, leaseSeconds))) {
          lost.abort(new Error("claim lost: lease taken over"));
        }
      } catch (e) {
        // A missed beat is survivable: the lease still has two thirds to run.
        log("heartbeat_failed", { ...about, error: errorMessage(e) });
      }
    }, leaseSeconds * 1000 * heartbeatFraction);

    try {
      let result: Json;
      try {
        const processor = config.processorFor(claim.source);
        if (!processor) {
          throw new NonRetryableError(`no processor is registered for source "${claim.source}"`);
        }
        result = await processor({ ...about, claimToken, signal: lost.signal });
      } catch (e) {
        if (lost.signal.aborted) {
          log("month_abandoned", { ...about, reason: "claim lost", error: errorMessage(e) });
          return;
        }
        const retryable = !(e instanceof NonRetryableError);
        const status = await persistently(() =>
          client.fail(claimToken, errorMessage(e), retryable)
        );
        log("month_failed", { ...about, error: errorMessage(e), retryable, status });
        return;
      }
      if (lost.signal.aborted) {
        log("month_abandoned", { ...about, reason: "claim lost" });
        return;
      }
      const recorded = await persistently(() => client.complete(claimToken, result));
      log(recorded ? "month_completed" : "month_completion_refused", about);
    } finally {
      clearInterval(timer);
    }
  }

  function runInBackground(claim: WorkerRequest): void {
    const work = processMonth(claim).catch((e) => {
      // The database could not be told; the lease will bring the month back.
      log("month_processing_error", {
        source: claim.source,
        month: claim.month,
        error: errorMessage(e),
      });
    });
    inFlight.add(work);
    work.finally(() => inFlight.delete(work));
    // On the Edge Runtime, keep the isolate alive until the month is done.
    (globalThis as { EdgeRuntime?: { waitUntil(p: Promise<unknown>): void } }).EdgeRuntime
      ?.waitUntil(work);
  }

  return {
    async handle(req) {
      const accepted = await acceptRequest(req, config.acceptedKey, WorkerRequest);
      if (!accepted.ok) {
        log("request_refused", { status: accepted.response.status, method: req.method });
        return accepted.response;
      }
      runInBackground(accepted.body);
      log("claim_accepted", { source: accepted.body.source, month: accepted.body.month });
      return json(
        { accepted: true, source: accepted.body.source, month: accepted.body.month },
        202,
      );
    },
    async idle() {
      while (inFlight.size) await Promise.all([...inFlight]);
    },
  };
}
