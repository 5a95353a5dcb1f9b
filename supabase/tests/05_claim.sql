-- claim_backfill_months: order (priority desc, month desc across sources), the source
-- filter, the limit, what a claim writes, and which rows are never claimed.
begin;
-- Other suites may be writing to this database while we run: hold them off until this
-- transaction ends (reads still pass), so only this file's rows are in view.
lock table public.backfill_log in exclusive mode;
select plan(24);

delete from public.backfill_log;
grant usage on schema extensions to service_role;

set local role service_role;
select public.enqueue_backfill_months('a', '2020-01-01', '2020-06-01');      -- priority 0
select public.enqueue_backfill_months('b', '2019-01-01', '2019-03-01', 5);   -- priority 5
select public.enqueue_backfill_months('c', '2021-01-01', '2021-02-01');      -- priority 0
reset role;

-- Rows that must never be claimed, all with the highest priority.
insert into public.backfill_log (source, month, priority, next_attempt_at)
values ('x', '2030-01-01', 100, now() + interval '1 hour');                                  -- not due yet
insert into public.backfill_log (source, month, priority, status, attempts, last_error, next_attempt_at)
values ('x', '2030-02-01', 100, 'retry', 1, 'boom', now() + interval '1 second');           -- retry, not due yet
insert into public.backfill_log (source, month, priority, status, attempts, claim_token, claimed_at, completed_at)
values ('x', '2030-03-01', 100, 'completed', 1, gen_random_uuid(), now(), now());
insert into public.backfill_log (source, month, priority, status, attempts, last_error)
values ('x', '2030-04-01', 100, 'failed', 5, 'boom');
insert into public.backfill_log (source, month, priority, status, attempts, claim_token, claimed_at, lease_expires_at)
values ('x', '2030-05-01', 100, 'processing', 1, gen_random_uuid(), now(), now() + interval '1 second');
create temp table untouchable as select * from public.backfill_log where source = 'x';

create temp table c1 (source text, month date, attempt int, claim_token uuid, lease_expires_at timestamptz);
create temp table c2 (like c1);
create temp table c3 (like c1);
create temp table c4 (like c1);
grant all on c1, c2, c3, c4, untouchable to service_role;

set local role service_role;
insert into c1 select * from public.claim_backfill_months(4, 'worker-1', 60);
select results_eq(
  'select source, month from c1',
  $$values ('b'::text, '2019-03-01'::date), ('b', '2019-02-01'), ('b', '2019-01-01'), ('c', '2021-02-01')$$,
  'a claim takes the highest priority first, then the newest month, across sources, and returns them in that order');
select is((select count(*)::int from c1), 4, 'a claim returns no more than p_limit months');

insert into c2 select * from public.claim_backfill_months(2);
select results_eq(
  'select source, month from c2',
  $$values ('c'::text, '2021-01-01'::date), ('a', '2020-06-01')$$,
  'the next claim continues in claim order with the months not yet taken');

insert into c3 select * from public.claim_backfill_months(10, 'worker-3', 120, 'a');
select results_eq(
  'select source, month from c3',
  $$values ('a'::text, '2020-05-01'::date), ('a', '2020-04-01'), ('a', '2020-03-01'), ('a', '2020-02-01'), ('a', '2020-01-01')$$,
  'a claim with p_source takes only that source''s due months, newest first, up to what is due');

-- what a claim writes
select results_eq(
  $$select b.status, b.attempts, b.claimed_by, b.claimed_at = now(), b.lease_expires_at = now() + interval '60 seconds',
           b.heartbeat_at is null
      from public.backfill_log b join c1 using (source, month) order by b.month desc$$,
  $$values ('processing'::text, 1, 'worker-1'::text, true, true, true), ('processing', 1, 'worker-1', true, true, true),
           ('processing', 1, 'worker-1', true, true, true), ('processing', 1, 'worker-1', true, true, true)$$,
  'claimed rows are processing, attempts + 1, claimed_by the worker, claimed now, leased for p_lease_seconds');
select ok((select bool_and(b.claim_token = c.claim_token and b.lease_expires_at = c.lease_expires_at and b.attempts = c.attempt)
             from public.backfill_log b join c1 c using (source, month)),
          'the returned token, lease and attempt are the row''s claim_token, lease_expires_at and attempts');
select is((select count(distinct claim_token)::int from (select claim_token from c1 union all select claim_token from c2
                                                         union all select claim_token from c3) t),
          11, 'every claimed month gets its own token');
select ok((select bool_and(claim_token is not null) from c1), 'claim tokens are not null');
select ok((select bool_and(b.claimed_by is null and b.lease_expires_at = now() + interval '900 seconds')
             from public.backfill_log b join c2 using (source, month)),
          'without p_worker_id claimed_by is null and the lease defaults to 900 s');
select ok((select bool_and(b.lease_expires_at = now() + interval '120 seconds')
             from public.backfill_log b join c3 using (source, month)),
          'the lease is now() + p_lease_seconds');

-- nothing else is due
select is((select count(*)::int from public.claim_backfill_months(1000)), 0,
          'once every due month is taken a claim returns an empty set');
select set_eq('select * from public.backfill_log where source = ''x''', 'select * from untouchable',
              'not-yet-due pending/retry, completed, failed and live processing rows are never claimed or changed');
select is((select count(*)::int from public.claim_backfill_months(10, p_source => 'x')), 0,
          'a claim for a source whose months are all undue, ended or held returns nothing');
select is((select count(*)::int from public.claim_backfill_months(10, p_source => 'nope')), 0,
          'a claim for an unknown source returns nothing');

-- a due retry comes back with its attempts counted, and a new token
reset role;
update public.backfill_log set status = 'retry', attempts = 1, last_error = 'boom', claim_token = null,
       lease_expires_at = null, next_attempt_at = now()
 where (source, month) = ('b', '2019-02-01');
update public.backfill_log set next_attempt_at = now() where (source, month) = ('x', '2030-01-01');
set local role service_role;
insert into c4 select * from public.claim_backfill_months(5);
select results_eq(
  'select source, month, attempt from c4',
  $$values ('x'::text, '2030-01-01'::date, 1), ('b', '2019-02-01', 2)$$,
  'a month becomes claimable when next_attempt_at arrives; a retry is claimed again with attempt 2');
select ok((select c4.claim_token <> c1.claim_token from c4 join c1 using (source, month)),
          're-claiming a month gives it a fresh token');
select is((select attempts from public.backfill_log where (source, month) = ('b', '2019-02-01')), 2,
          'the returned attempt equals the attempts column after the re-claim');

-- ties and priorities with the same month
reset role;
delete from public.backfill_log;
insert into public.backfill_log (source, month, priority) values
  ('p', '2000-01-01', 3), ('q', '2025-01-01', 1), ('r', '2025-01-01', 2), ('p', '2010-01-01', 3), ('q', '2026-01-01', -1);
set local role service_role;
select results_eq(
  'select source, month from public.claim_backfill_months(5)',
  $$values ('p'::text, '2010-01-01'::date), ('p', '2000-01-01'), ('r', '2025-01-01'), ('q', '2025-01-01'), ('q', '2026-01-01')$$,
  'priority outranks month: an old month of higher priority comes before a newer one of lower priority');

-- limit exactness on a bigger queue
reset role;
delete from public.backfill_log;
set local role service_role;
select public.enqueue_backfill_months('big', '1900-01-01', '2000-12-01');
select is((select count(*)::int from public.claim_backfill_months(1000)), 1000, 'p_limit 1000 claims exactly 1000 months');
select is((select count(*)::int from public.claim_backfill_months(1, p_source => 'big')), 1, 'p_limit 1 claims exactly one month');
select is((select count(*)::int from public.claim_backfill_months()), 1, 'the default p_limit is 1');
select is((select count(*)::int from public.backfill_log where status = 'processing'), 1002,
          'exactly the claimed months are processing');
select is((select max(month) from public.backfill_log where status = 'pending'), '1917-06-01'::date,
          'the months claimed are the newest ones (the oldest remain pending)');
select is((select min(month) from public.backfill_log where status = 'processing'), '1917-07-01'::date,
          'no older month was claimed before a newer one');

select * from finish();
rollback;
