-- backfill_internal: helpers shared by the public RPCs. Not in an API-exposed schema,
-- so PostgREST never serves them; executable only by service_role, through the RPCs.
--
-- Every function pins search_path = '' (invariant 6), so every name is schema-qualified.

create schema if not exists backfill_internal;
revoke all on schema backfill_internal from public, anon, authenticated;
grant usage on schema backfill_internal to service_role;

-- Bad arguments raise 22023 (invalid_parameter_value) naming the argument, before
-- anything is written, so a refused call changes nothing. These are stable, not
-- immutable: an immutable call with constant arguments is evaluated while a query is
-- planned, so it would raise at plan time (plpgsql_check does exactly that).
create function backfill_internal.invalid_argument(p_name text, p_problem text)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  raise exception '% %', p_name, p_problem using errcode = '22023';
end;
$$;

create function backfill_internal.require_between(
  p_name text, p_value integer, p_min integer, p_max integer)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if p_value is null then
    perform backfill_internal.invalid_argument(p_name, 'must not be null');
  elsif p_value < p_min or p_value > p_max then
    perform backfill_internal.invalid_argument(
      p_name, format('must be between %s and %s (got %s)', p_min, p_max, p_value));
  end if;
end;
$$;

create function backfill_internal.require_not_null(p_name text, p_value anyelement)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if p_value is null then
    perform backfill_internal.invalid_argument(p_name, 'must not be null');
  end if;
end;
$$;

-- A source is a non-empty name of at most 200 characters (the table's own check),
-- refused here first so the caller gets 22023 rather than a constraint violation.
create function backfill_internal.require_source(p_name text, p_source text)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if p_source is null then
    perform backfill_internal.invalid_argument(p_name, 'must not be null');
  elsif p_source = '' or length(p_source) > 200 then
    perform backfill_internal.invalid_argument(p_name, 'must be 1 to 200 characters');
  end if;
end;
$$;

-- The first day of the month of any day. Through timestamp (without time zone):
-- date_trunc on a date would go through timestamptz and the session's time zone.
create function backfill_internal.month_of(p_day date)
returns date
language sql
immutable
strict
set search_path = ''
as $$
  select date_trunc('month', p_day::timestamp)::date
$$;

-- p_from .. p_to must not run backwards. Compared as months, since any day stands for
-- its month: 2020-01-20 .. 2020-01-10 is January, not an error. Nulls pass (callers
-- that need both dates check them first).
create function backfill_internal.require_month_order(p_from date, p_to date)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if backfill_internal.month_of(p_from) > backfill_internal.month_of(p_to) then
    perform backfill_internal.invalid_argument(
      'p_from', format('must not be in a month after p_to (%s > %s)', p_from, p_to));
  end if;
end;
$$;

-- Exponential backoff with jitter for the attempt that just failed: 10 s, 20 s, 40 s …
-- capped at one hour, each scaled by a random factor in [0.5, 1) so months that failed
-- together do not come back together.
create function backfill_internal.retry_delay(p_attempt integer)
returns interval
language sql
volatile
set search_path = ''
as $$
  select make_interval(secs => least(3600, 10 * power(2, greatest(p_attempt, 1) - 1))
                               * (0.5 + random() / 2))
$$;

-- Invariant 4 (Recovered): a processing row whose lease has expired (up to 1000 of
-- them a call, oldest lease first) goes back to
-- retry (or to failed if that was its last attempt), dropping its token so the dead
-- worker's late calls are refused. The attempt stays counted: the claim was not
-- released. SKIP LOCKED: a row a live worker is completing right now is left to it,
-- and the re-check under the lock ignores a lease that was extended meanwhile.
create function backfill_internal.expire_leases()
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_count integer;
begin
  with expired as (
    select b.source, b.month
    from public.backfill_log b
    where b.lease_expires_at <= now()
    order by b.lease_expires_at
    -- Bounded, so that after a mass worker death no single call holds thousands of
    -- row locks; the next claim or reaper run takes the rest.
    limit 1000
    for update skip locked
  )
  update public.backfill_log b
  set status           = case when b.attempts >= b.max_attempts then 'failed' else 'retry' end,
      next_attempt_at  = now(),
      last_error       = format('lease expired at %s (claimed by %s, attempt %s)',
                                to_char(b.lease_expires_at at time zone 'UTC',
                                        'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                coalesce(b.claimed_by, 'an unnamed worker'), b.attempts),
      claim_token      = null,
      lease_expires_at = null,
      updated_at       = now()
  from expired e
  where b.source = e.source and b.month = e.month;
  get diagnostics v_count = row_count;
  if v_count > 0 then
    perform backfill_internal.reset_claim_cursor();
  end if;
  return v_count;
end;
$$;

-- The claim cursor: where an all-sources claim starts its walk down the claim order.
--
-- Why: every claimed month leaves a dead entry at the head of the claim-order index.
-- Postgres skips such entries cheaply only once no snapshot can still see the old row
-- version; while a long report, a lagging replica or a slot pins the MVCC horizon,
-- every claim would walk all of them, and claims slow down without bound
-- (shared/NOTES.md). So a claim remembers where it stopped and the next one starts
-- there, past the dead entries.
--
-- The cursor holds claim_cursor_key(priority, month) of a position at or above every
-- claimable month (claim order is that key, descending). It lives in a sequence
-- because a sequence is not versioned: a row updated on every claim would itself grow
-- a chain of dead versions under a pinned horizon, the very cost the cursor avoids.
-- Sequences are not transactional, so the cursor is only ever a hint, kept safe by
-- three rules:
--   * whatever makes months due now (enqueue, release, expiry, retry_failed) resets it
--     to the top;
--   * a claim that finds nothing below the cursor looks again from the top, so
--     "nothing due" is always the whole truth;
--   * at least once a second a claim ignores the cursor and walks from the top. That
--     bounds what a hint can miss — a month made due by a transaction that committed
--     during a concurrent claim, a rolled-back claim, a retry whose backoff ran out —
--     to a delay of about a second, never a loss.
create sequence backfill_internal.claim_cursor
  as bigint minvalue 0 maxvalue 9223372036854775807 start with 9223372036854775807;
create sequence backfill_internal.claim_cursor_checked_ms
  as bigint minvalue 0 start with 0;

-- The cursor key of a month: priority in the high bits, months since year 0 in the low
-- 20, so the key orders exactly as (priority, month). claim_backfill_months encodes and
-- decodes it inline, on its hot path; the pgTAP suite holds the two to this definition.
create function backfill_internal.claim_cursor_key(p_priority integer, p_month date)
returns bigint
language sql
immutable
strict
set search_path = ''
as $$
  select ((p_priority::bigint + 2147483648) << 20)
         | (extract(year from p_month)::bigint * 12 + extract(month from p_month)::bigint - 1)
$$;

create function backfill_internal.reset_claim_cursor()
returns void
language sql
volatile
set search_path = ''
as $$
  select pg_catalog.setval('backfill_internal.claim_cursor', 9223372036854775807)
$$;

revoke all on sequence backfill_internal.claim_cursor, backfill_internal.claim_cursor_checked_ms
  from public, anon, authenticated;
grant select, update on sequence backfill_internal.claim_cursor, backfill_internal.claim_cursor_checked_ms
  to service_role;

revoke all on function backfill_internal.invalid_argument(text, text) from public, anon, authenticated;
revoke all on function backfill_internal.require_between(text, integer, integer, integer) from public, anon, authenticated;
revoke all on function backfill_internal.require_not_null(text, anyelement) from public, anon, authenticated;
revoke all on function backfill_internal.require_source(text, text) from public, anon, authenticated;
revoke all on function backfill_internal.month_of(date) from public, anon, authenticated;
revoke all on function backfill_internal.require_month_order(date, date) from public, anon, authenticated;
revoke all on function backfill_internal.retry_delay(integer) from public, anon, authenticated;
revoke all on function backfill_internal.expire_leases() from public, anon, authenticated;
revoke all on function backfill_internal.claim_cursor_key(integer, date) from public, anon, authenticated;
revoke all on function backfill_internal.reset_claim_cursor() from public, anon, authenticated;
grant execute on function backfill_internal.invalid_argument(text, text) to service_role;
grant execute on function backfill_internal.require_between(text, integer, integer, integer) to service_role;
grant execute on function backfill_internal.require_not_null(text, anyelement) to service_role;
grant execute on function backfill_internal.require_source(text, text) to service_role;
grant execute on function backfill_internal.month_of(date) to service_role;
grant execute on function backfill_internal.require_month_order(date, date) to service_role;
grant execute on function backfill_internal.retry_delay(integer) to service_role;
grant execute on function backfill_internal.expire_leases() to service_role;
grant execute on function backfill_internal.claim_cursor_key(integer, date) to service_role;
grant execute on function backfill_internal.reset_claim_cursor() to service_role;
