-- Operating the queue: the lease reaper that pg_cron runs every minute, and the
-- per-source progress report.

-- Invariant 4 (Recovered): turns every expired processing row into retry (or failed on
-- its last attempt) and returns how many. Claims recover expired leases themselves as
-- well; this keeps recovery going, and progress honest, while nobody is claiming.
create function public.reap_expired_backfill_leases()
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_total integer := 0;
  v_batch integer;
begin
  loop
    v_batch := backfill_internal.expire_leases();
    v_total := v_total + v_batch;
    exit when v_batch < 1000;
  end loop;
  return v_total;
end;
$$;

-- One row per source: how many months it has in each status, the earliest time a
-- waiting month is (or becomes) due, and the earliest lease to expire.
create function public.backfill_progress(p_source text default null)
returns table (
  source            text,
  total             integer,
  pending           integer,
  processing        integer,
  retry             integer,
  completed         integer,
  failed            integer,
  oldest_due        timestamptz,
  next_lease_expiry timestamptz)
language sql
stable
set search_path = ''
as $$
  select b.source,
         count(*)::integer,
         (count(*) filter (where b.status = 'pending'))::integer,
         (count(*) filter (where b.status = 'processing'))::integer,
         (count(*) filter (where b.status = 'retry'))::integer,
         (count(*) filter (where b.status = 'completed'))::integer,
         (count(*) filter (where b.status = 'failed'))::integer,
         min(b.next_attempt_at) filter (where b.status in ('pending', 'retry')),
         min(b.lease_expires_at)
  from public.backfill_log b
  where p_source is null or b.source = p_source
  group by b.source
  order by b.source
$$;

revoke all on function public.reap_expired_backfill_leases() from public, anon, authenticated;
revoke all on function public.backfill_progress(text) from public, anon, authenticated;
grant execute on function public.reap_expired_backfill_leases() to service_role;
grant execute on function public.backfill_progress(text) to service_role;
