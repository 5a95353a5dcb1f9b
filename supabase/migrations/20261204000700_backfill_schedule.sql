-- The pg_cron jobs that drive the scheduler: schedule_backfill_scheduler registers
-- them (idempotently, by job name), unschedule_backfill_scheduler removes them.
--
-- The scheduler job POSTs to the backfill-scheduler edge function through pg_net. Its
-- URL and key are read from Vault by name each time the job runs: neither is stored in
-- this migration, in the job's text, or anywhere else but Vault.

-- pg_cron must be loaded (shared_preload_libraries); in pg_catalog as Supabase installs it.
create extension if not exists pg_cron with schema pg_catalog;

-- pg_net where this Postgres has it (hosted Supabase does); where it is absent the
-- migration still applies and schedule_backfill_scheduler says what is missing.
do $$
begin
  if exists (select 1 from pg_available_extensions where name = 'pg_net') then
    create extension if not exists pg_net;
  end if;
end;
$$;

-- Security definer: cron jobs run as the role that scheduled them, and only the owner
-- (the migration's role) may use cron, net and vault; callers need only EXECUTE.
create function public.schedule_backfill_scheduler(
  p_schedule        text    default '*/2 * * * *',
  p_limit           integer default 10,
  p_lease_seconds   integer default 900,
  p_url_secret      text    default 'backfill_scheduler_url',
  p_key_secret      text    default 'backfill_scheduler_key',
  p_reaper_schedule text    default '* * * * *')
returns table (jobname text, jobid bigint, schedule text, command text)
language plpgsql
volatile
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_missing text[] := array[]::text[];
begin
  perform backfill_internal.require_not_null('p_schedule', p_schedule);
  perform backfill_internal.require_not_null('p_reaper_schedule', p_reaper_schedule);
  perform backfill_internal.require_between('p_limit', p_limit, 1, 100);
  perform backfill_internal.require_between('p_lease_seconds', p_lease_seconds, 10, 86400);
  -- The job runs as this function's owner and sends the key secret to the URL secret:
  -- only secrets named for this purpose may be used, so a caller cannot have some
  -- other Vault secret posted to wherever another secret points.
  if p_url_secret is null or p_url_secret not like 'backfill\_%' then
    perform backfill_internal.invalid_argument('p_url_secret', 'must name a Vault secret starting with backfill_');
  end if;
  if p_key_secret is null or p_key_secret not like 'backfill\_%' then
    perform backfill_internal.invalid_argument('p_key_secret', 'must name a Vault secret starting with backfill_');
  end if;

  if to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') is null then
    v_missing := v_missing || 'pg_net (create extension pg_net)'::text;
  end if;
  if to_regclass('vault.decrypted_secrets') is null then
    v_missing := v_missing || 'Vault (vault.decrypted_secrets)'::text;
  else
    -- Only the names are looked at; the secrets are read by the job when it runs.
    if not backfill_internal.vault_has_secret(p_url_secret) then
      v_missing := v_missing || format('the Vault secret %L (the backfill-scheduler URL)', p_url_secret);
    end if;
    if not backfill_internal.vault_has_secret(p_key_secret) then
      v_missing := v_missing || format('the Vault secret %L (the key it accepts)', p_key_secret);
    end if;
  end if;
  if cardinality(v_missing) > 0 then
    raise exception 'cannot schedule the backfill scheduler: missing %',
      array_to_string(v_missing, ', ')
      using errcode = '55000',
            hint = 'select vault.create_secret(''https://<project>.supabase.co/functions/v1/backfill-scheduler'', '''
                   || p_url_secret || '''); select vault.create_secret(''<secret key>'', '''
                   || p_key_secret || ''');';
  end if;

  perform cron.schedule('backfill-scheduler', p_schedule, format(
    $job$select net.http_post(
  url := (select decrypted_secret from vault.decrypted_secrets where name = %1$L),
  headers := jsonb_build_object(
    'Content-Type', 'application/json',
    'Authorization', 'Bearer ' || (select decrypted_secret from vault.decrypted_secrets where name = %2$L)),
  body := jsonb_build_object('limit', %3$s, 'leaseSeconds', %4$s),
  timeout_milliseconds := 30000)$job$,
    p_url_secret, p_key_secret, p_limit, p_lease_seconds));
  perform cron.schedule('backfill-reaper', p_reaper_schedule,
                        'select public.reap_expired_backfill_leases()');

  return query
  select j.jobname::text, j.jobid, j.schedule::text, j.command
  from cron.job j
  where j.jobname in ('backfill-scheduler', 'backfill-reaper')
  order by j.jobname desc;
end;
$$;

-- Removes both jobs; returns how many were there. Idempotent.
create function public.unschedule_backfill_scheduler()
returns integer
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_count integer := 0;
  v_jobid bigint;
begin
  for v_jobid in
    select j.jobid from cron.job j where j.jobname in ('backfill-scheduler', 'backfill-reaper')
  loop
    perform cron.unschedule(v_jobid);
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

-- Vault may be absent when this migration runs, so its view is named only at run time.
create function backfill_internal.vault_has_secret(p_name text)
returns boolean
language plpgsql
stable
set search_path = ''
as $$
declare
  v_found boolean;
begin
  execute 'select exists (select 1 from vault.decrypted_secrets where name = $1)'
    into v_found using p_name;
  return v_found;
end;
$$;

revoke all on function public.schedule_backfill_scheduler(text, integer, integer, text, text, text) from public, anon, authenticated;
revoke all on function public.unschedule_backfill_scheduler() from public, anon, authenticated;
revoke all on function backfill_internal.vault_has_secret(text) from public, anon, authenticated;
grant execute on function public.schedule_backfill_scheduler(text, integer, integer, text, text, text) to service_role;
grant execute on function public.unschedule_backfill_scheduler() to service_role;
