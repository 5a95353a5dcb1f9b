-- The life of a claim: heartbeat, release (attempt not counted), fail with backoff and
-- jitter, the last attempt, operator re-queue, and peek.
begin;
-- Other suites may be writing to this database while we run: hold them off until this
-- transaction ends (reads still pass), so only this file's rows are in view.
lock table public.backfill_log in exclusive mode;
select plan(38);

delete from public.backfill_log;
grant usage on schema extensions to service_role;

create temp table tok (name text primary key, token uuid, source text, month date, attempt int);
create temp table fails (source text, month date, status text);
grant all on tok, fails to service_role;

set local role service_role;
select public.enqueue_backfill_months('h', '2020-01-01', '2020-03-01');

-- ---------------------------------------------------------------- heartbeat
insert into tok select 'hb', claim_token, source, month, attempt from public.claim_backfill_months(1, 'w', 60, 'h');
select is(public.heartbeat_backfill_month((select token from tok where name = 'hb'), 3600), now() + interval '3600 seconds',
          'heartbeat returns the new lease expiry, now() + p_lease_seconds');
select results_eq(
  $$select lease_expires_at, heartbeat_at, status, attempts from public.backfill_log b join tok using (source, month) where name = 'hb'$$,
  $$values (now() + interval '3600 seconds', now(), 'processing'::text, 1)$$,
  'heartbeat stores the extended lease and marks the claim started, without spending an attempt');
select is(public.heartbeat_backfill_month((select token from tok where name = 'hb')), now() + interval '900 seconds',
          'heartbeat''s lease defaults to 900 s');

-- ---------------------------------------------------------------- release
insert into tok select 'rel', claim_token, source, month, attempt from public.claim_backfill_months(1, 'w', 60, 'h');
select is(public.release_backfill_month((select token from tok where name = 'rel')), true, 'release of an unstarted claim returns true');
select results_eq(
  $$select status, attempts, claim_token is null, lease_expires_at is null, next_attempt_at <= now()
      from public.backfill_log b join tok using (source, month) where name = 'rel'$$,
  $$values ('pending'::text, 0, true, true, true)$$,
  'a released first claim is pending again with attempts back to 0, no token, no lease, due at once');
select results_eq(
  $$select source, month, attempt from public.claim_backfill_months(1, 'w', 60, 'h')$$,
  $$select source, month, 1 from tok where name = 'rel'$$,
  'the released month is claimable again and the new claim is attempt 1 (invariant 3)');

reset role;
insert into public.backfill_log (source, month, status, attempts, last_error, priority)
values ('h2', '2020-01-01', 'retry', 2, 'earlier failure', 50);
set local role service_role;
insert into tok select 'rel2', claim_token, source, month, attempt from public.claim_backfill_months(1, 'w', 60, 'h2');
select is((select attempt from tok where name = 'rel2'), 3, 'a retry with 2 attempts is claimed as attempt 3');
select is(public.release_backfill_month((select token from tok where name = 'rel2')), true, 'release of the retry claim returns true');
select results_eq(
  $$select status, attempts, last_error from public.backfill_log where source = 'h2'$$,
  $$values ('retry'::text, 2, 'earlier failure'::text)$$,
  'releasing a re-claimed retry puts it back to retry with its earlier attempts only');

-- ---------------------------------------------------------------- fail: backoff
reset role;
delete from public.backfill_log;
set local role service_role;
select public.enqueue_backfill_months('b', '2020-01-01', '2020-01-01', 0, 20);
insert into tok select 'f1', claim_token, source, month, attempt from public.claim_backfill_months(1, 'w', 60, 'b');
select is(public.fail_backfill_month((select token from tok where name = 'f1'), 'first'), 'retry',
          'a retryable failure with attempts left returns retry');
select results_eq(
  $$select status, attempts, last_error, claim_token is null, lease_expires_at is null from public.backfill_log where source = 'b'$$,
  $$values ('retry'::text, 1, 'first'::text, true, true)$$,
  'a failed attempt stays counted, stores the error and drops token and lease');
select ok((select next_attempt_at >= now() + interval '5 seconds' and next_attempt_at < now() + interval '10 seconds'
             from public.backfill_log where source = 'b'),
          'after attempt 1 the retry is due in [5 s, 10 s) (10 s base, jitter [0.5, 1))');
select is((select count(*)::int from public.claim_backfill_months(1, 'w', 60, 'b')), 0,
          'a month backing off is not claimable before next_attempt_at');

reset role; update public.backfill_log set next_attempt_at = now() where source = 'b'; set local role service_role;
insert into tok select 'f2', claim_token, source, month, attempt from public.claim_backfill_months(1, 'w', 60, 'b');
select is(public.fail_backfill_month((select token from tok where name = 'f2'), 'second'), 'retry', 'attempt 2 fails to retry');
select ok((select next_attempt_at >= now() + interval '10 seconds' and next_attempt_at < now() + interval '20 seconds'
             from public.backfill_log where source = 'b'),
          'after attempt 2 the retry is due in [10 s, 20 s): the delay doubles');

reset role; update public.backfill_log set next_attempt_at = now() where source = 'b'; set local role service_role;
insert into tok select 'f3', claim_token, source, month, attempt from public.claim_backfill_months(1, 'w', 60, 'b');
select is(public.fail_backfill_month((select token from tok where name = 'f3'), 'third'), 'retry', 'attempt 3 fails to retry');
select ok((select next_attempt_at >= now() + interval '20 seconds' and next_attempt_at < now() + interval '40 seconds'
             from public.backfill_log where source = 'b'),
          'after attempt 3 the retry is due in [20 s, 40 s)');

reset role;
update public.backfill_log set next_attempt_at = now(), attempts = 14 where source = 'b';
set local role service_role;
insert into tok select 'f15', claim_token, source, month, attempt from public.claim_backfill_months(1, 'w', 60, 'b');
select is(public.fail_backfill_month((select token from tok where name = 'f15'), 'fifteenth'), 'retry', 'attempt 15 of 20 fails to retry');
select ok((select next_attempt_at >= now() + interval '1800 seconds' and next_attempt_at < now() + interval '3600 seconds'
             from public.backfill_log where source = 'b'),
          'the backoff is capped at one hour (due in [30 min, 60 min))');

-- ---------------------------------------------------------------- fail: jitter
reset role; delete from public.backfill_log; set local role service_role;
select public.enqueue_backfill_months('j', '2000-01-01', '2001-08-01');
insert into fails select c.source, c.month, public.fail_backfill_month(c.claim_token, 'together')
  from public.claim_backfill_months(20, 'w', 60, 'j') c;
select is((select count(*)::int from fails where status = 'retry'), 20, '20 months failing at attempt 1 all go to retry');
select cmp_ok((select count(distinct next_attempt_at)::int from public.backfill_log where source = 'j'), '>', 1,
              'months failing together at the same attempt come back at different times (jitter)');
select ok((select bool_and(next_attempt_at >= now() + interval '5 seconds' and next_attempt_at < now() + interval '10 seconds')
             from public.backfill_log where source = 'j'),
          'each jittered delay stays within [5 s, 10 s) for attempt 1');

-- ---------------------------------------------------------------- fail: last attempt, not retryable
reset role; delete from public.backfill_log; set local role service_role;
select public.enqueue_backfill_months('l', '2020-01-01', '2020-02-01', 0, 2);
insert into tok select 'l1', claim_token, source, month, attempt from public.claim_backfill_months(1, 'w', 60, 'l');
select is(public.fail_backfill_month((select token from tok where name = 'l1'), 'one'), 'retry', 'attempt 1 of 2 fails to retry');
reset role; update public.backfill_log set next_attempt_at = now() where status = 'retry'; set local role service_role;
insert into tok select 'l2', claim_token, source, month, attempt from public.claim_backfill_months(1, 'w', 60, 'l');
select is((select attempt from tok where name = 'l2'), 2, 'the retry is claimed as attempt 2 of 2');
select is(public.fail_backfill_month((select token from tok where name = 'l2'), 'two'), 'failed',
          'a failure on the last attempt returns failed');
select results_eq(
  $$select status, attempts, last_error, claim_token is null from public.backfill_log b join tok using (source, month) where name = 'l2'$$,
  $$values ('failed'::text, 2, 'two'::text, true)$$,
  'the month is failed with attempts = max_attempts and the last error');

insert into tok select 'nr', claim_token, source, month, attempt from public.claim_backfill_months(1, 'w', 60, 'l');
select is(public.fail_backfill_month((select token from tok where name = 'nr'), 'bad data', false), 'failed',
          'a non-retryable failure returns failed at once');
select results_eq(
  $$select status, attempts from public.backfill_log b join tok using (source, month) where name = 'nr'$$,
  $$values ('failed'::text, 1)$$,
  'a non-retryable failure ends the month on its first attempt');
select is((select count(*)::int from public.claim_backfill_months(10)), 0, 'failed months are not claimed');

-- ---------------------------------------------------------------- retry_failed_backfill_months
reset role;
delete from public.backfill_log;
insert into public.backfill_log (source, month, status, attempts, last_error)
select s, m::date, 'failed', 5, 'gave up'
  from unnest(array['r1', 'r2']) s, generate_series('2020-01-01'::date, '2020-04-01', interval '1 month') m;
insert into public.backfill_log (source, month) values ('r1', '2020-05-01');
set local role service_role;
select is(public.retry_failed_backfill_months('r1', '2020-02-10', '2020-03-05'), 2,
          're-queue of r1 between 2020-02-10 and 2020-03-05 returns 2 (Feb and Mar, by month)');
select results_eq(
  $$select source, month, status, attempts from public.backfill_log order by source, month$$,
  $$values ('r1'::text, '2020-01-01'::date, 'failed'::text, 5), ('r1', '2020-02-01', 'pending', 0), ('r1', '2020-03-01', 'pending', 0),
           ('r1', '2020-04-01', 'failed', 5), ('r1', '2020-05-01', 'pending', 0),
           ('r2', '2020-01-01', 'failed', 5), ('r2', '2020-02-01', 'failed', 5), ('r2', '2020-03-01', 'failed', 5),
           ('r2', '2020-04-01', 'failed', 5)$$,
  're-queue honours p_source and p_from/p_to and resets attempts to 0 as pending');
select is(public.retry_failed_backfill_months(p_from => '2020-04-01'), 2,
          're-queue with only p_from takes the failed months from then on, of every source');
select is(public.retry_failed_backfill_months(), 4, 're-queue without arguments takes every remaining failed month');
select is(public.retry_failed_backfill_months(), 0, 're-queue with nothing failed returns 0');
select is((select count(*)::int from public.claim_backfill_months(100)), 9, 're-queued months are claimable again, with the one that was pending (all 9)');

-- ---------------------------------------------------------------- peek
reset role;
delete from public.backfill_log;
insert into public.backfill_log (source, month, priority) select 'p' || (g % 3), date '2000-01-01' + make_interval(months => g), g % 4
  from generate_series(1, 40) g;
insert into public.backfill_log (source, month, priority, status, attempts, claim_token, claimed_at, lease_expires_at)
values ('p0', '1999-01-01', 9, 'processing', 1, gen_random_uuid(), now() - interval '1 hour', now() - interval '1 second');
insert into public.backfill_log (source, month, priority, next_attempt_at) values ('p1', '1999-01-01', 9, now() + interval '1 minute');
create temp table peeked as select * from public.backfill_log where false;
create temp table before_peek as select md5(string_agg(b::text, '|' order by source, month)) h from public.backfill_log b;
create temp table peek1 (source text, month date, status text, attempts int);
grant all on peeked, before_peek, peek1 to service_role;
set local role service_role;
insert into peek1 select * from public.peek_backfill_months(8);
select is((select md5(string_agg(b::text, '|' order by source, month)) from public.backfill_log b),
          (select h from before_peek), 'peek changes nothing');
select results_eq(
  $$select source, month from peek1 limit 1$$,
  $$values ('p0'::text, '1999-01-01'::date)$$,
  'peek shows an expired processing month first by priority, as a claim would recover it; not the undue one');
select results_eq(
  $$select c.source, c.month from public.claim_backfill_months(8) c$$,
  $$select source, month from peek1$$,
  'a claim right after takes exactly the months peek showed, in the same order');

select * from finish();
rollback;
