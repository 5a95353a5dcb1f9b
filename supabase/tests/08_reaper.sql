-- Invariant 4 (Recovered): expired leases go back to retry (or failed on the last
-- attempt), by the reaper or directly by the next claim; and backfill_progress.
begin;
-- Other suites may be writing to this database while we run: hold them off until this
-- transaction ends (reads still pass), so only this file's rows are in view.
lock table public.backfill_log in exclusive mode;
select plan(26);

delete from public.backfill_log;
grant usage on schema extensions to service_role;

create temp table tok (name text primary key, token uuid, source text, month date);
create temp table live_before as select * from public.backfill_log where false;
grant all on tok, live_before to service_role;

set local role service_role;
select public.enqueue_backfill_months('r', '2020-01-01', '2020-06-01');
insert into tok select 'm' || to_char(month, 'MM'), claim_token, source, month
  from public.claim_backfill_months(4, 'reaped-worker', 60, 'r');   -- 2020-06 .. 2020-03
reset role;
-- 2020-06 and 2020-05 lose their lease; 2020-05 was on its last attempt.
update public.backfill_log set lease_expires_at = now() - interval '1 second' where month in ('2020-06-01', '2020-05-01');
update public.backfill_log set max_attempts = 1 where month = '2020-05-01';
insert into live_before select * from public.backfill_log where month in ('2020-04-01', '2020-03-01');
set local role service_role;

select is(public.reap_expired_backfill_leases(), 2, 'the reaper returns how many expired leases it ended');
select results_eq(
  $$select status, attempts, claim_token is null, lease_expires_at is null, next_attempt_at <= now(),
           last_error like '%lease expired%'
      from public.backfill_log where source = 'r' and month = '2020-06-01'$$,
  $$values ('retry'::text, 1, true, true, true, true)$$,
  'an expired claim with attempts left becomes retry, due now, with its attempt kept and its token dropped');
select results_eq(
  $$select status, attempts, claim_token is null, lease_expires_at is null, last_error like '%lease expired%'
      from public.backfill_log where source = 'r' and month = '2020-05-01'$$,
  $$values ('failed'::text, 1, true, true, true)$$,
  'an expired claim on its last attempt becomes failed');
select set_eq($$select * from public.backfill_log where month in ('2020-04-01', '2020-03-01')$$,
              'select * from live_before', 'claims whose lease has not expired are untouched by the reaper');
select is(public.complete_backfill_month((select token from tok where name = 'm06')), false,
          'the dead worker''s token is refused by complete after reaping');
select is(public.heartbeat_backfill_month((select token from tok where name = 'm06')), null,
          'the dead worker''s token is refused by heartbeat after reaping');
select is(public.fail_backfill_month((select token from tok where name = 'm05'), 'late'), null,
          'the dead worker''s token of a reaped-to-failed month is refused by fail');
select is((select status from public.backfill_log where month = '2020-05-01'), 'failed',
          'the refused late call left the failed month failed');
select is(public.reap_expired_backfill_leases(), 0, 'reaping again with no expired lease returns 0');

select results_eq(
  $$select source, month, attempt from public.claim_backfill_months(1, 'w2', 60, 'r')$$,
  $$values ('r'::text, '2020-06-01'::date, 2)$$,
  'a reaped month is claimable again, as attempt 2');

-- a lease that ends exactly now counts as expired
reset role;
update public.backfill_log set lease_expires_at = now() where month = '2020-04-01';
set local role service_role;
select is(public.reap_expired_backfill_leases(), 1, 'a lease expiring exactly now is reaped');

-- ---------------------------------------------------------------- a claim recovers by itself
reset role;
update public.backfill_log set lease_expires_at = now() - interval '1 minute' where month = '2020-03-01';
set local role service_role;
select results_eq(
  $$select source, month, attempt from public.claim_backfill_months(1, 'w3', 60, 'r')$$,
  $$values ('r'::text, '2020-04-01'::date, 2)$$,
  'claims take due months in order (2020-04, reaped, before 2020-03 whose lease just expired)');
select results_eq(
  $$select source, month, attempt from public.claim_backfill_months(1, 'w3', 60, 'r')$$,
  $$values ('r'::text, '2020-03-01'::date, 2)$$,
  'without the reaper a claim recovers a month whose lease has expired (invariant 4)');
select is(public.complete_backfill_month((select token from tok where name = 'm03')), false,
          'the token of a month recovered by a claim is refused');
select is((select claimed_by from public.backfill_log where month = '2020-03-01'), 'w3',
          'the recovered month is held by the new claimer');

reset role;
update public.backfill_log set lease_expires_at = now() - interval '1 minute', max_attempts = attempts
 where month = '2020-03-01';
set local role service_role;
select is((select count(*)::int from public.claim_backfill_months(10, p_source => 'r')), 2,
          'a claim takes only the 2 still-pending months, not an expired month on its last attempt');
select is((select status from public.backfill_log where month = '2020-03-01'), 'failed',
          'the claim ends an expired month on its last attempt as failed');

-- ---------------------------------------------------------------- backfill_progress
reset role;
delete from public.backfill_log;
insert into public.backfill_log (source, month, status, attempts, last_error, claim_token, claimed_at, lease_expires_at,
                                 completed_at, next_attempt_at) values
  ('a', '2020-01-01', 'pending',    0, null,   null, null, null, null, now() + interval '5 minutes'),
  ('a', '2020-02-01', 'pending',    0, null,   null, null, null, null, now() + interval '2 minutes'),
  ('a', '2020-03-01', 'processing', 1, null,   gen_random_uuid(), now(), now() + interval '10 minutes', null, now()),
  ('a', '2020-04-01', 'processing', 1, null,   gen_random_uuid(), now(), now() + interval '3 minutes', null, now()),
  ('a', '2020-05-01', 'retry',      1, 'x',    null, null, null, null, now() + interval '1 minute'),
  ('a', '2020-06-01', 'completed',  1, null,   gen_random_uuid(), now(), null, now(), now() - interval '1 day'),
  ('a', '2020-07-01', 'failed',     5, 'x',    null, null, null, null, now() - interval '2 days'),
  ('b', '2020-01-01', 'completed',  1, null,   gen_random_uuid(), now(), null, now(), now() - interval '1 day'),
  ('b', '2020-02-01', 'completed',  1, null,   gen_random_uuid(), now(), null, now(), now() - interval '1 day');
set local role service_role;
select results_eq(
  $$select source, total, pending, processing, retry, completed, failed from public.backfill_progress()$$,
  $$values ('a'::text, 7, 2, 2, 1, 1, 1), ('b', 2, 0, 0, 0, 2, 0)$$,
  'backfill_progress counts each status per source, with the total, one row per source ordered by source');
select is((select oldest_due from public.backfill_progress() where source = 'a'), now() + interval '1 minute',
          'oldest_due is the earliest next_attempt_at of the waiting (pending or retry) months');
select is((select next_lease_expiry from public.backfill_progress() where source = 'a'), now() + interval '3 minutes',
          'next_lease_expiry is the earliest lease of the source');
select results_eq(
  $$select oldest_due, next_lease_expiry from public.backfill_progress('b')$$,
  $$values (null::timestamptz, null::timestamptz)$$,
  'a source with nothing waiting or held has null oldest_due and next_lease_expiry');
select is((select count(*)::int from public.backfill_progress('b')), 1, 'p_source limits the report to that source');
select is((select count(*)::int from public.backfill_progress('nope')), 0, 'an unknown source has no progress row');
select is((select sum(total)::int from public.backfill_progress()),
          (select count(*)::int from public.backfill_log), 'the totals add up to every row');

-- A mass worker death: more expired leases than one expire_leases() batch (1000).
reset role;
insert into public.backfill_log (source, month, status, attempts, claim_token, claimed_at, lease_expires_at)
select 'mass', make_date(1900 + m / 12, m % 12 + 1, 1), 'processing', 1, gen_random_uuid(),
       now() - interval '2 hours', now() - interval '1 hour'
from generate_series(0, 2499) m;
set local role service_role;
select is(public.reap_expired_backfill_leases(), 2500,
          'the reaper ends every expired lease, even more than one batch of 1000');
select is((select count(*)::int from public.backfill_log where source = 'mass' and status = 'retry'), 2500,
          'after a mass expiry every month is back in retry');

select * from finish();
rollback;
