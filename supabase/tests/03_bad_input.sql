-- Bad arguments raise 22023 with a message naming the argument, and change nothing.
begin;
-- Other suites may be writing to this database while we run: hold them off until this
-- transaction ends (reads still pass), so only this file's rows are in view.
lock table public.backfill_log in exclusive mode;
select plan(45);

delete from public.backfill_log;
grant usage on schema extensions to service_role;

-- rejects(sql, argument, description): one test that the call raises SQLSTATE 22023 and
-- that the message names the argument.
create function pg_temp.rejects(p_sql text, p_arg text, p_description text)
returns text
language plpgsql
as $$
declare
  v_state text;
  v_message text;
begin
  begin
    execute p_sql;
  exception when others then
    get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
    return concat_ws(E'\n',
      extensions.ok(v_state = '22023' and strpos(v_message, p_arg) > 0, p_description),
      case when not (v_state = '22023' and strpos(v_message, p_arg) > 0) then
        extensions.diag(format('    got SQLSTATE %s: %s (wanted 22023 naming %s)', v_state, v_message, p_arg))
      end);
  end;
  return concat_ws(E'\n', extensions.ok(false, p_description),
                   extensions.diag('    no error was raised'));
end;
$$;
grant execute on function pg_temp.rejects(text, text, text) to service_role;

-- A known state to compare against: waiting, live, completed, failed rows.
set local role service_role;
select public.enqueue_backfill_months('bad', '2020-01-01', '2020-06-01');
create temp table live as
  select * from public.claim_backfill_months(2, 'w', 60, 'bad');
select public.complete_backfill_month((select claim_token from live order by month desc limit 1), '{"ok":1}');
reset role;
grant select on live to service_role;
update public.backfill_log set status = 'failed', attempts = 1, last_error = 'boom'
 where source = 'bad' and month = '2020-01-01';

create temp table snapshot as
  select md5(string_agg(b::text, '|' order by b.source, b.month)) as hash, count(*) as n
    from public.backfill_log b;
create temp table cron_before as
  select jobname, schedule, command from cron.job;

set local role service_role;
\set live_token '(select claim_token from live order by month limit 1)'

-- tokens
select pg_temp.rejects('select public.heartbeat_backfill_month(null)', 'p_claim_token',
                       'heartbeat with a null token raises 22023 naming p_claim_token');
select pg_temp.rejects('select public.complete_backfill_month(null)', 'p_claim_token',
                       'complete with a null token raises 22023 naming p_claim_token');
select pg_temp.rejects($$select public.fail_backfill_month(null, 'boom')$$, 'p_claim_token',
                       'fail with a null token raises 22023 naming p_claim_token');
select pg_temp.rejects('select public.release_backfill_month(null)', 'p_claim_token',
                       'release with a null token raises 22023 naming p_claim_token');
select pg_temp.rejects('select public.fail_backfill_month(' || :'live_token' || ', null)', 'p_error',
                       'fail with a null p_error raises 22023 naming p_error (on a live claim)');
select pg_temp.rejects('select public.fail_backfill_month(' || :'live_token' || ', ''boom'', null)', 'p_retryable',
                       'fail with a null p_retryable raises 22023 naming p_retryable');

-- p_limit
select pg_temp.rejects('select * from public.claim_backfill_months(0)', 'p_limit', 'claim with p_limit 0 raises 22023 naming p_limit');
select pg_temp.rejects('select * from public.claim_backfill_months(1001)', 'p_limit', 'claim with p_limit 1001 raises 22023 naming p_limit');
select pg_temp.rejects('select * from public.claim_backfill_months(null)', 'p_limit', 'claim with a null p_limit raises 22023 naming p_limit');
select pg_temp.rejects('select * from public.claim_backfill_months(-5)', 'p_limit', 'claim with a negative p_limit raises 22023 naming p_limit');
select pg_temp.rejects('select * from public.peek_backfill_months(0)', 'p_limit', 'peek with p_limit 0 raises 22023 naming p_limit');
select pg_temp.rejects('select * from public.peek_backfill_months(1001)', 'p_limit', 'peek with p_limit 1001 raises 22023 naming p_limit');
select pg_temp.rejects('select * from public.peek_backfill_months(null)', 'p_limit', 'peek with a null p_limit raises 22023 naming p_limit');

-- p_lease_seconds
select pg_temp.rejects('select * from public.claim_backfill_months(1, null, 0)', 'p_lease_seconds',
                       'claim with p_lease_seconds 0 raises 22023 naming p_lease_seconds');
select pg_temp.rejects('select * from public.claim_backfill_months(1, null, 86401)', 'p_lease_seconds',
                       'claim with p_lease_seconds 86401 raises 22023 naming p_lease_seconds');
select pg_temp.rejects('select * from public.claim_backfill_months(1, null, null)', 'p_lease_seconds',
                       'claim with a null p_lease_seconds raises 22023 naming p_lease_seconds');
select pg_temp.rejects('select public.heartbeat_backfill_month(' || :'live_token' || ', 0)', 'p_lease_seconds',
                       'heartbeat with p_lease_seconds 0 raises 22023 naming p_lease_seconds (on a live claim)');
select pg_temp.rejects('select public.heartbeat_backfill_month(' || :'live_token' || ', 86401)', 'p_lease_seconds',
                       'heartbeat with p_lease_seconds 86401 raises 22023 naming p_lease_seconds (on a live claim)');

-- sources and worker ids
select pg_temp.rejects($$select * from public.claim_backfill_months(1, p_source => '')$$, 'p_source',
                       'claim with an empty p_source raises 22023 naming p_source');
select pg_temp.rejects($$select * from public.peek_backfill_months(1, repeat('x', 201))$$, 'p_source',
                       'peek with a 201-character p_source raises 22023 naming p_source');
select pg_temp.rejects($$select * from public.claim_backfill_months(1, repeat('w', 201))$$, 'p_worker_id',
                       'claim with a 201-character p_worker_id raises 22023 naming p_worker_id');
select pg_temp.rejects($$select public.retry_failed_backfill_months('')$$, 'p_source',
                       'retry_failed with an empty p_source raises 22023 naming p_source');

-- enqueue
select pg_temp.rejects($$select public.enqueue_backfill_months('bad', '2020-03-01', '2020-02-01')$$, 'p_from',
                       'enqueue with p_from after p_to raises 22023 naming p_from');
select pg_temp.rejects($$select public.enqueue_backfill_months('bad', null, '2020-02-01')$$, 'p_from',
                       'enqueue with a null p_from raises 22023 naming p_from');
select pg_temp.rejects($$select public.enqueue_backfill_months('bad', '2020-01-01', null)$$, 'p_to',
                       'enqueue with a null p_to raises 22023 naming p_to');
select pg_temp.rejects($$select public.enqueue_backfill_months('', '2020-01-01', '2020-02-01')$$, 'p_source',
                       'enqueue with an empty source raises 22023 naming p_source');
select pg_temp.rejects($$select public.enqueue_backfill_months(repeat('s', 201), '2020-01-01', '2020-02-01')$$, 'p_source',
                       'enqueue with a 201-character source raises 22023 naming p_source');
select pg_temp.rejects($$select public.enqueue_backfill_months(null, '2020-01-01', '2020-02-01')$$, 'p_source',
                       'enqueue with a null source raises 22023 naming p_source');
select pg_temp.rejects($$select public.enqueue_backfill_months('bad', '2020-01-01', '2020-02-01', 0, 0)$$, 'p_max_attempts',
                       'enqueue with p_max_attempts 0 raises 22023 naming p_max_attempts');
select pg_temp.rejects($$select public.enqueue_backfill_months('bad', '2020-01-01', '2020-02-01', 0, 101)$$, 'p_max_attempts',
                       'enqueue with p_max_attempts 101 raises 22023 naming p_max_attempts');
select pg_temp.rejects($$select public.enqueue_backfill_months('bad', '2020-01-01', '2020-02-01', 0, null)$$, 'p_max_attempts',
                       'enqueue with a null p_max_attempts raises 22023 naming p_max_attempts');
select pg_temp.rejects($$select public.enqueue_backfill_months('bad', '2020-01-01', '2020-02-01', null)$$, 'p_priority',
                       'enqueue with a null p_priority raises 22023 naming p_priority');
select pg_temp.rejects($$select public.enqueue_backfill_months('bad', '0001-01-01', '3000-01-01')$$, 'p_to',
                       'enqueue of more than 1200 years of months raises 22023 naming p_to');

-- retry_failed
select pg_temp.rejects($$select public.retry_failed_backfill_months(null, '2020-03-01', '2020-02-01')$$, 'p_from',
                       'retry_failed with p_from after p_to raises 22023 naming p_from');
select pg_temp.rejects($$select public.retry_failed_backfill_months('bad', '2020-03-01', '2020-02-01')$$, 'p_from',
                       'retry_failed for one source with p_from after p_to raises 22023 naming p_from');

-- schedule (argument checks come before any look at pg_net, Vault or pg_cron)
select pg_temp.rejects($$select * from public.schedule_backfill_scheduler(p_limit => 0)$$, 'p_limit',
                       'schedule with p_limit 0 raises 22023 naming p_limit');
select pg_temp.rejects($$select * from public.schedule_backfill_scheduler(p_lease_seconds => 86401)$$, 'p_lease_seconds',
                       'schedule with p_lease_seconds 86401 raises 22023 naming p_lease_seconds');
select pg_temp.rejects($$select * from public.schedule_backfill_scheduler(p_schedule => null)$$, 'p_schedule',
                       'schedule with a null p_schedule raises 22023 naming p_schedule');
select pg_temp.rejects($$select * from public.schedule_backfill_scheduler(p_key_secret => '')$$, 'p_key_secret',
                       'schedule with an empty p_key_secret raises 22023 naming p_key_secret');
select pg_temp.rejects($$select * from public.schedule_backfill_scheduler(p_key_secret => 'some_other_secret')$$, 'p_key_secret',
                       'schedule refuses a key secret not named backfill_* (no other Vault secret can be posted)');
select pg_temp.rejects($$select * from public.schedule_backfill_scheduler(p_url_secret => 'some_other_url')$$, 'p_url_secret',
                       'schedule refuses a URL secret not named backfill_*');

-- ... and nothing changed
reset role;
select is((select md5(string_agg(b::text, '|' order by b.source, b.month)) from public.backfill_log b),
          (select hash from snapshot),
          'no refused call changed any row of backfill_log');
select is((select count(*) from public.backfill_log), (select n from snapshot),
          'no refused call added or removed a row');
select results_eq(
  $$select status, attempts, lease_expires_at = now() + interval '60 seconds', heartbeat_at is null
      from public.backfill_log where claim_token = (select claim_token from live order by month limit 1)$$,
  $$values ('processing'::text, 1, true, true)$$,
  'the live claim used by the refused heartbeat/fail calls is still held, lease and attempt unchanged');
select set_eq('select jobname, schedule, command from cron.job',
              'select jobname, schedule, command from cron_before',
              'refused schedule calls registered or changed no pg_cron job');

select * from finish();
rollback;
