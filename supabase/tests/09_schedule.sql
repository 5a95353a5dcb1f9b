-- schedule_backfill_scheduler / unschedule_backfill_scheduler: two pg_cron jobs, registered
-- idempotently; the scheduler job reads its URL and key from Vault when it runs (never
-- stored in its text) and POSTs through pg_net. Needs pg_net and Vault (hosted Supabase,
-- or the local stack's stand-ins); without them only the refusal is tested.
begin;
-- Other suites may be writing to this database while we run: hold them off until this
-- transaction ends (reads still pass), so only this file's rows are in view.
lock table public.backfill_log in exclusive mode;
select plan(22);

delete from public.backfill_log;
grant usage on schema extensions to service_role;

select (to_regclass('vault.decrypted_secrets') is not null
        and to_regprocedure('vault.create_secret(text, text, text, uuid)') is not null
        and to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') is not null
        and to_regclass('net.http_request_queue') is not null) as have_net_and_vault \gset

\if :have_net_and_vault

-- a clean slate inside this transaction: no secrets of these names, no jobs
delete from vault.secrets where name in ('backfill_scheduler_url', 'backfill_scheduler_key');
select public.unschedule_backfill_scheduler();
create temp table secret_values as
  select 'http://127.0.0.1:9/functions/v1/backfill-scheduler?t=' || gen_random_uuid() as url,
         'test-key-' || gen_random_uuid() as key;
create temp table queue_before as select coalesce(max(id), 0) as max_id from net.http_request_queue;
grant select on secret_values to service_role;

set local role service_role;
select throws_like($$select * from public.schedule_backfill_scheduler()$$,
                   '%''backfill_scheduler_url''%''backfill_scheduler_key''%',
                   'with no Vault secrets, scheduling refuses and names both missing secrets');
select throws_ok($$select * from public.schedule_backfill_scheduler()$$, '55000', null,
                 'the refusal is SQLSTATE 55000 (object not in prerequisite state)');
reset role;
select vault.create_secret((select url from secret_values), 'backfill_scheduler_url');
set local role service_role;
select throws_like($$select * from public.schedule_backfill_scheduler()$$,
                   'cannot schedule%missing the Vault secret ''backfill_scheduler_key''%',
                   'with only the URL secret, scheduling refuses and names the missing key secret');
reset role;
select is((select count(*)::int from cron.job where jobname in ('backfill-scheduler', 'backfill-reaper')), 0,
          'a refused schedule registers no job');
select vault.create_secret((select key from secret_values), 'backfill_scheduler_key');

set local role service_role;
select results_eq(
  $$select jobname, schedule from public.schedule_backfill_scheduler()$$,
  $$values ('backfill-scheduler'::text, '*/2 * * * *'::text), ('backfill-reaper', '* * * * *')$$,
  'with both secrets, schedule_backfill_scheduler() with defaults registers the scheduler and the reaper');
reset role;

select is((select count(*)::int from cron.job where jobname in ('backfill-scheduler', 'backfill-reaper')), 2,
          'exactly two jobs are registered');
select results_eq(
  $$select schedule, command from cron.job where jobname = 'backfill-reaper'$$,
  $$values ('* * * * *'::text, 'select public.reap_expired_backfill_leases()'::text)$$,
  'the reaper job runs reap_expired_backfill_leases() every minute');
select is((select username::text from cron.job where jobname = 'backfill-scheduler'),
          (select pg_get_userbyid(proowner)::text from pg_proc
            where oid = 'public.schedule_backfill_scheduler(text, integer, integer, text, text, text)'::regprocedure),
          'the jobs run as the function''s owner (who may read Vault), not as the caller');

set local role service_role;
select lives_ok($$select * from public.schedule_backfill_scheduler('*/5 * * * *', 25)$$,
                'scheduling again succeeds');
reset role;
select is((select count(*)::int from cron.job where jobname in ('backfill-scheduler', 'backfill-reaper')), 2,
          'scheduling twice still leaves exactly two jobs (idempotent)');
select is((select schedule from cron.job where jobname = 'backfill-scheduler'), '*/5 * * * *',
          'scheduling again updates the scheduler job''s schedule');

select ok((select strpos(j.command, s.url) = 0 from cron.job j, secret_values s where j.jobname = 'backfill-scheduler'),
          'the scheduler job''s command does not contain the URL stored in Vault');
select ok((select strpos(j.command, s.key) = 0 from cron.job j, secret_values s where j.jobname = 'backfill-scheduler'),
          'the scheduler job''s command does not contain the key stored in Vault');
select ok((select bool_and(strpos(j.command, s.key) = 0 and strpos(j.command, s.url) = 0)
             from cron.job j, secret_values s),
          'no pg_cron job''s command contains a secret value');
select matches((select command from cron.job where jobname = 'backfill-scheduler'),
               'vault\.decrypted_secrets.*backfill_scheduler_url.*vault\.decrypted_secrets.*backfill_scheduler_key',
               'the scheduler job reads the URL and the key from vault.decrypted_secrets by name when it runs');

-- run the job's command as pg_cron would
do $$ begin execute (select command from cron.job where jobname = 'backfill-scheduler'); end $$;
select is((select count(*)::int from net.http_request_queue where id > (select max_id from queue_before)), 1,
          'running the scheduler job queues exactly one pg_net request');
select results_eq(
  $$select q.method, q.url, q.headers ->> 'Authorization', convert_from(q.body, 'UTF8')::jsonb
      from net.http_request_queue q where q.id > (select max_id from queue_before)$$,
  $$select 'POST'::text, s.url, 'Bearer ' || s.key, '{"limit": 25, "leaseSeconds": 900}'::jsonb from secret_values s$$,
  'the request POSTs to the URL from Vault with the key from Vault as a Bearer token, and the limit and lease as its body');

-- rotating a secret takes effect at the next run, without rescheduling
select vault.update_secret((select id from vault.secrets where name = 'backfill_scheduler_key'), 'rotated-key');
do $$ begin execute (select command from cron.job where jobname = 'backfill-scheduler'); end $$;
select is((select headers ->> 'Authorization' from net.http_request_queue
            where id > (select max_id from queue_before) order by id desc limit 1),
          'Bearer rotated-key', 'a rotated Vault key is used by the next run of the job');

set local role service_role;
select is(public.unschedule_backfill_scheduler(), 2, 'unschedule removes both jobs and returns 2');
reset role;
select is((select count(*)::int from cron.job where jobname in ('backfill-scheduler', 'backfill-reaper')), 0,
          'after unschedule no backfill job is left');
set local role service_role;
select is(public.unschedule_backfill_scheduler(), 0, 'unschedule again returns 0');
select lives_ok($$select * from public.schedule_backfill_scheduler()$$,
                'after unschedule the jobs can be scheduled again');
reset role;

\else

set local role service_role;
select throws_ok($$select * from public.schedule_backfill_scheduler()$$, '55000', null,
                 'without pg_net or Vault, scheduling refuses with 55000');
reset role;
select skip('pg_net (net.http_post, net.http_request_queue) or Vault (vault.decrypted_secrets) is not installed', 21);

\endif

select * from finish();
rollback;
