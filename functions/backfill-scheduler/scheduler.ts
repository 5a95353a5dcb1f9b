// The scheduler: claim due months through the RPC, hand each claim to a worker, and
// give back (release) every claim a worker did not take.
//
// A hand-over either gets a 202 (the worker owns the claim) or it does not: refused,
// any other status, or no answer in time. Without a 202 the claim is released. That is
// safe even when the request timed out after the worker got it, because a worker's
// first act is a heartbeat and the database refuses to release a claim that has
// heartbeated (see release_backfill_month): either the release wins and the worker,
// finding its claim gone, never starts; or the worker started and the release is
// refused, leaving it the month. A claim whose release itself fails (database down)
// is recovered by its lease. So a month is never lost and never run twice at once.

import { z } from "zod";
import type { BackfillClient, Claim } from "../_shared/backfill_client.ts";
import { acceptRequest, json } from "../_shared/http.ts";
import { errorMessage, log } from "../_shared/log.ts";
import { databaseErrorResponse } from "../_shared/database_error.ts";

export const SchedulerRequest = z.strictObject({
  limit: z.number().int().min(1).max(100).optional(),
  // Postgres text holds neither NUL nor lone UTF-16 surrogates: refused here (400), they
  // would come back from the database as an error (22P05, 22P02) and a 500.
  source: z.string().min(1).max(200)
    .refine(
      (s) => !s.includes("\u0000") && s.isWellFormed(),
      "must be text without NUL or lone surrogates",
    )
    .optional(),
  leaseSeconds: z.number().int().min(10).max(86400).optional(),
  dryRun: z.boolean().optional(),
});

export interface SchedulerConfig {
  client: BackfillClient;
  /** The key callers must present (see ../_shared/auth.ts); undefined lets nobody in. */
  acceptedKey: string | undefined;
  workerUrl: string;
  /** Sent to the worker so it can authenticate the scheduler. */
  workerKey: string | undefined;
  dispatchTimeoutMs?: number;
  dispatchParallelism?: number;
  fetch?: typeof fetch;
}

/** release_failed: left to the lease. kept_by_worker: no 202 came, but the worker started. */
export type DispatchOutcome = "dispatched" | "released" | "kept_by_worker" | "release_failed";

interface ClaimReport {
  source: string;
  month: string;
  attempt: number;
  outcome: DispatchOutcome;
  error?: string;
}

export function createScheduler(config: SchedulerConfig): (req: Request) => Promise<Response> {
  const timeoutMs = config.dispatchTimeoutMs ?? 10_000;
  const parallelism = config.dispatchParallelism ?? 8;
  const send = config.fetch ?? fetch;
  const workerId = `backfill-scheduler:${crypto.randomUUID()}`;

  async function handOver(claim: Claim, leaseSeconds: number): Promise<ClaimReport> {
    const report = { source: claim.source, month: claim.month, attempt: claim.attempt };
    let error: string;
    try {
      const response = await send(config.workerUrl, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(config.workerKey ? { authorization: `Bearer ${config.workerKey}` } : {}),
        },
        body: JSON.stringify({ ...claim, leaseSeconds }),
        signal: AbortSignal.timeout(timeoutMs),
      });
      await response.body?.cancel();
      if (response.status === 202) {
        log("claim_dispatched", report);
        return { ...report, outcome: "dispatched" };
      }
      error = `worker answered ${response.status}`;
    } catch (e) {
      error = errorMessage(e);
    }
    try {
      if (await config.client.release(claim.claimToken)) {
        log("claim_released", { ...report, error });
        return { ...report, outcome: "released", error };
      }
      log("claim_kept_by_worker", { ...report, error });
      return { ...report, outcome: "kept_by_worker", error };
    } catch (e) {
      log("claim_release_failed", { ...report, error, releaseError: errorMessage(e) });
      return { ...report, outcome: "release_failed", error };
    }
  }

  return async function handle(req: Request): Promise<Response> {
    const accepted = await acceptRequest(req, config.acceptedKey, SchedulerRequest);
    if (!accepted.ok) {
      log("request_refused", { status: accepted.response.status, method: req.method });
      return accepted.response;
    }
    const { limit = 10, source, leaseSeconds = 900, dryRun = false } = accepted.body;

    try {
      if (dryRun) {
        const wouldClaim = await config.client.peek({ limit, source });
        log("dry_run", { wouldClaim: wouldClaim.length, source });
        return json({ dryRun: true, claimed: 0, wouldClaim });
      }
      const claims = await config.client.claim({ limit, source, leaseSeconds, workerId });
      log("months_claimed", { claimed: claims.length, source, limit });
      const reports = await mapBounded(claims, parallelism, (c) => handOver(c, leaseSeconds));
      const count = (o: DispatchOutcome) => reports.filter((r) => r.outcome === o).length;
      const summary = {
        claimed: claims.length,
        dispatched: count("dispatched"),
        released: count("released"),
        keptByWorker: count("kept_by_worker"),
        failed: count("release_failed"),
        claims: reports,
      };
      log("schedule_finished", { ...summary, claims: undefined });
      return json(summary);
    } catch (e) {
      return databaseErrorResponse(e);
    }
  };
}

/** Runs `fn` over `items`, at most `parallelism` at a time, keeping their order. */
async function mapBounded<T, R>(items: T[], parallelism: number, fn: (item: T) => Promise<R>) {
  const results: R[] = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(parallelism, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  });
  await Promise.all(lanes);
  return results;
}
