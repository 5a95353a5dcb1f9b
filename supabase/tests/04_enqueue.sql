-- enqueue_backfill_months: every month of an inclusive range, any day standing for its
-- month; idempotent; returns how many months were new.
begin;
-- Other suites may be writing to this database while we run: hold them off until this
-- transaction ends (reads still pass), so only this file's rows are in view.
lock table public.backfill_log in exclusive mode;
select plan(18);

delete from public.backfill_log;
grant usage on schema extensions to service_role;
set local role service_role;

select is(public.enqueue_backfill_months('e', '2020-01-15', '2020-03-02'), 3,
          'mid-month days 2020-01-15..2020-03-02 enqueue 3 months and return 3');
select results_eq(
  $$select month from public.backfill_log where source = 'e' order by month$$,
  $$values ('2020-01-01'::date), ('2020-02-01'), ('2020-03-01')$$,
  'each day is normalised to the first day of its month');
select results_eq(
  $$select distinct status, attempts, priority, max_attempts, claim_token is null, next_attempt_at <= now()
      from public.backfill_log where source = 'e'$$,
  $$values ('pending'::text, 0, 0, 5, true, true)$$,
  'new months are pending, untried, priority 0, 5 attempts, unclaimed and due now');

select is(public.enqueue_backfill_months('e', '2020-01-01', '2020-03-31'), 0,
          'enqueueing the same months again returns 0');
select is((select count(*)::int from public.backfill_log where source = 'e'), 3,
          'enqueueing the same months again adds no row');

-- existing rows are left exactly as they are, whatever state they are in
select public.complete_backfill_month(claim_token, '{"n": 1}')
  from public.claim_backfill_months(1, 'w', 60, 'e');                          -- 2020-03 completed
create temp table held as select * from public.claim_backfill_months(1, 'w', 60, 'e');   -- 2020-02 processing
reset role;
create temp table before_rows as select * from public.backfill_log where source = 'e';
grant select on held, before_rows to service_role;
set local role service_role;

select is(public.enqueue_backfill_months('e', '2019-12-01', '2020-04-01', 9, 2), 2,
          'an overlapping range returns only the months that were new (2019-12 and 2020-04)');
select set_eq(
  $$select * from public.backfill_log where source = 'e' and month between '2020-01-01' and '2020-03-01'$$,
  $$select * from before_rows$$,
  'existing months keep status, priority, attempts, token, lease and result when enqueued again');
select results_eq(
  $$select month, priority, max_attempts from public.backfill_log
     where source = 'e' and month in ('2019-12-01', '2020-04-01') order by month$$,
  $$values ('2019-12-01'::date, 9, 2), ('2020-04-01'::date, 9, 2)$$,
  'new months get the given priority and max_attempts');
select is(public.heartbeat_backfill_month((select claim_token from held)), now() + interval '900 seconds',
          'a claim held during a re-enqueue of its month is still live');

-- bounds
select is(public.enqueue_backfill_months('b', '2020-01-01', '2020-12-01'), 12,
          'bounds are inclusive: 2020-01-01..2020-12-01 is 12 months');
select ok(exists (select 1 from public.backfill_log where source = 'b' and month = '2020-01-01')
          and exists (select 1 from public.backfill_log where source = 'b' and month = '2020-12-01'),
          'both the first and the last month of the range are enqueued');
select is(public.enqueue_backfill_months('y', '2019-11-30', '2020-02-01'), 4,
          'a range across a year boundary counts every month (2019-11..2020-02)');

select is(public.enqueue_backfill_months('one', '2021-06-15', '2021-06-15'), 1,
          'a single day enqueues its single month');
select is((select month from public.backfill_log where source = 'one'), '2021-06-01'::date,
          'the single month is the first day of that month');
select is(public.enqueue_backfill_months('one', '2021-06-01', '2021-06-30'), 0,
          'a range within an already enqueued month adds nothing');

select is(public.enqueue_backfill_months('e2', '2020-01-01', '2020-03-01'), 3,
          'the same months of another source are new months');

reset role;
set local timezone = 'Pacific/Kiritimati';
set local role service_role;
select is(public.enqueue_backfill_months('tz', '2020-03-01', '2020-03-31'), 1,
          'month normalisation does not depend on the session time zone');

select is(public.enqueue_backfill_months('same-month', '2020-01-20', '2020-01-10'), 1,
          'p_from after p_to within the same month is that month, not an error');

select * from finish();
rollback;
