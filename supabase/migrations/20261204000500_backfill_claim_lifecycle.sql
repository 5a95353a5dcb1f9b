-- Holding and ending a claim: heartbeat, complete, fail, release. Each is keyed by the
-- claim token alone.
--
-- Invariant 2 (Fenced): each one acts only on the row whose claim_token is the given
-- token and which is still processing. A token superseded by a re-claim no longer
-- matches any row; a token ended by fail or release was dropped from its row; a token
-- ended by complete matches only a completed row, which these never change (complete
-- merely reports it again). So a stale token changes nothing.
--
-- "Still processing" includes a lease that has run out but that no one has taken over
-- yet: the token still holds the month, so its worker may extend the lease or finish.
-- Whichever of it and the reaper (or a new claim) locks the row first wins, and the
-- other sees the row changed.

-- Extends a held lease to now() + p_lease_seconds and returns the new expiry; null
-- when the claim is no longer held, which tells the worker to stop. A worker's first
-- heartbeat also marks the claim started (heartbeat_at), after which it can no longer
-- be released: see release_backfill_month.
create function public.heartbeat_backfill_month(
  p_claim_token   uuid,
  p_lease_seconds integer default 900)
returns timestamptz
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_lease_expires_at timestamptz;
begin
  perform backfill_internal.require_not_null('p_claim_token', p_claim_token);
  perform backfill_internal.require_between('p_lease_seconds', p_lease_seconds, 1, 86400);

  update public.backfill_log b
  set lease_expires_at = now() + make_interval(secs => p_lease_seconds),
      heartbeat_at     = now(),
      updated_at       = now()
  where b.claim_token = p_claim_token
    and b.status = 'processing'
  returning b.lease_expires_at into v_lease_expires_at;
  return v_lease_expires_at;
end;
$$;

-- Records the month as done with its result. true: recorded, also when the same token
-- repeats it (a retried HTTP call must not turn into an error); false: stale token.
create function public.complete_backfill_month(
  p_claim_token uuid,
  p_result      jsonb default null)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform backfill_internal.require_not_null('p_claim_token', p_claim_token);

  update public.backfill_log b
  set status           = 'completed',
      result           = p_result,
      completed_at     = now(),
      lease_expires_at = null,
      last_error       = null,
      updated_at       = now()
  where b.claim_token = p_claim_token
    and b.status = 'processing';
  if found then
    return true;
  end if;
  -- Only the completing token is kept on a row that is no longer processing.
  return exists (select 1 from public.backfill_log b where b.claim_token = p_claim_token);
end;
$$;

-- Records a failed attempt. 'retry': due again after exponential backoff with jitter;
-- 'failed': attempts spent or the error is not retryable; null: stale token.
create function public.fail_backfill_month(
  p_claim_token uuid,
  p_error       text,
  p_retryable   boolean default true)
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_status text;
begin
  perform backfill_internal.require_not_null('p_claim_token', p_claim_token);
  perform backfill_internal.require_not_null('p_error', p_error);
  perform backfill_internal.require_not_null('p_retryable', p_retryable);

  update public.backfill_log b
  set status           = case when p_retryable and b.attempts < b.max_attempts
                              then 'retry' else 'failed' end,
      next_attempt_at  = case when p_retryable and b.attempts < b.max_attempts
                              then now() + backfill_internal.retry_delay(b.attempts)
                              else b.next_attempt_at end,
      last_error       = left(p_error, 10000),
      claim_token      = null,
      lease_expires_at = null,
      updated_at       = now()
  where b.claim_token = p_claim_token
    and b.status = 'processing'
  returning b.status into v_status;
  return v_status;
end;
$$;

-- Hands back a claim that was never started (e.g. the scheduler could not deliver it
-- to a worker): the month is due again at once and the attempt is not counted
-- (invariant 3). true: released; false: stale token, or the claim was started.
--
-- "Started" is the worker's first heartbeat, which a worker sends before any work. So
-- when a hand-over is in doubt (the request timed out: did the worker get it?), the
-- scheduler may still release safely: either the release wins, and the worker's
-- heartbeat then finds the claim gone and it never starts; or the heartbeat won, the
-- release is refused and the worker keeps the month. Never both, so a month is never
-- processed twice at once.
create function public.release_backfill_month(p_claim_token uuid)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
begin
  perform backfill_internal.require_not_null('p_claim_token', p_claim_token);

  update public.backfill_log b
  set status           = case when b.attempts > 1 then 'retry' else 'pending' end,
      attempts         = b.attempts - 1,
      next_attempt_at  = now(),
      claim_token      = null,
      lease_expires_at = null,
      updated_at       = now()
  where b.claim_token = p_claim_token
    and b.status = 'processing'
    and b.heartbeat_at is null;
  if found then
    perform backfill_internal.reset_claim_cursor();
    return true;
  end if;
  return false;
end;
$$;

revoke all on function public.heartbeat_backfill_month(uuid, integer) from public, anon, authenticated;
revoke all on function public.complete_backfill_month(uuid, jsonb) from public, anon, authenticated;
revoke all on function public.fail_backfill_month(uuid, text, boolean) from public, anon, authenticated;
revoke all on function public.release_backfill_month(uuid) from public, anon, authenticated;
grant execute on function public.heartbeat_backfill_month(uuid, integer) to service_role;
grant execute on function public.complete_backfill_month(uuid, jsonb) to service_role;
grant execute on function public.fail_backfill_month(uuid, text, boolean) to service_role;
grant execute on function public.release_backfill_month(uuid) to service_role;
