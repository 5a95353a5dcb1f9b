-- Putting months into the queue: enqueue_backfill_months (new work) and
-- retry_failed_backfill_months (an operator's re-queue of failed work).

-- Adds every month from p_from to p_to inclusive; any day stands for its month.
-- Idempotent: a month already present is left exactly as it is (status, priority,
-- attempts), so re-running a backfill's enqueue never resets or duplicates work.
-- Returns how many months were new.
create function public.enqueue_backfill_months(
  p_source       text,
  p_from         date,
  p_to           date,
  p_priority     integer default 0,
  p_max_attempts integer default 5)
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_count integer;
begin
  perform backfill_internal.require_source('p_source', p_source);
  perform backfill_internal.require_not_null('p_from', p_from);
  perform backfill_internal.require_not_null('p_to', p_to);
  perform backfill_internal.require_month_order(p_from, p_to);
  -- 1200 years of months: far beyond any real backfill, small enough for one statement.
  if (extract(year from p_to) - extract(year from p_from)) * 12
     + extract(month from p_to) - extract(month from p_from) >= 14400 then
    perform backfill_internal.invalid_argument(
      'p_to', 'must be less than 1200 years after p_from');
  end if;
  perform backfill_internal.require_not_null('p_priority', p_priority);
  perform backfill_internal.require_between('p_max_attempts', p_max_attempts, 1, 100);

  insert into public.backfill_log (source, month, priority, max_attempts)
  select p_source, m::date, p_priority, p_max_attempts
  from generate_series(backfill_internal.month_of(p_from)::timestamp,
                       backfill_internal.month_of(p_to)::timestamp,
                       interval '1 month') as m
  on conflict (source, month) do nothing;
  get diagnostics v_count = row_count;
  if v_count > 0 then
    perform backfill_internal.reset_claim_cursor();
  end if;
  return v_count;
end;
$$;

-- Sends failed months (optionally of one source, within [p_from, p_to] by month) back
-- to pending with their attempts reset; last_error is kept as history. Returns how many.
create function public.retry_failed_backfill_months(
  p_source text default null,
  p_from   date default null,
  p_to     date default null)
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_count integer;
begin
  if p_source is not null then
    perform backfill_internal.require_source('p_source', p_source);
  end if;
  perform backfill_internal.require_month_order(p_from, p_to);

  update public.backfill_log b
  set status          = 'pending',
      attempts        = 0,
      next_attempt_at = now(),
      updated_at      = now()
  where b.status = 'failed'
    and (p_source is null or b.source = p_source)
    and (p_from is null or b.month >= backfill_internal.month_of(p_from))
    and (p_to is null or b.month <= p_to);
  get diagnostics v_count = row_count;
  if v_count > 0 then
    perform backfill_internal.reset_claim_cursor();
  end if;
  return v_count;
end;
$$;

revoke all on function public.enqueue_backfill_months(text, date, date, integer, integer) from public, anon, authenticated;
revoke all on function public.retry_failed_backfill_months(text, date, date) from public, anon, authenticated;
grant execute on function public.enqueue_backfill_months(text, date, date, integer, integer) to service_role;
grant execute on function public.retry_failed_backfill_months(text, date, date) to service_role;
