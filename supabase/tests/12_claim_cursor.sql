-- The claim cursor (backfill_internal.claim_cursor): an all-sources claim starts where
-- the last one stopped, and the cursor stays a hint that can delay but never hide a
-- month: whatever makes months due resets it, a walk that finds nothing looks again
-- from the top, and once a second a claim walks from the top anyway.
begin;
lock table public.backfill_log in exclusive mode;
select plan(9);

delete from public.backfill_log;
grant usage on schema extensions to service_role;
create temp table got (step text, month date);
grant all on got to service_role;
-- A fresh start: cursor at the top, and the once-a-second walk from the top just done.
select backfill_internal.reset_claim_cursor();
select setval('backfill_internal.claim_cursor_checked_ms', (extract(epoch from clock_timestamp()) * 1000)::bigint);

set local role service_role;
select public.enqueue_backfill_months('cur', '2020-01-01', '2020-06-01');
insert into got select 'first', month from public.claim_backfill_months(3, 'w', 60);
select is((select last_value from backfill_internal.claim_cursor),
          backfill_internal.claim_cursor_key(0, '2020-04-01'),
          'after a claim the cursor sits at the last month it took');

-- release: the released month is due again above the cursor, and comes first
select public.release_backfill_month((select claim_token from public.backfill_log where month = '2020-06-01'));
select is((select month from public.claim_backfill_months(1, 'w', 60)), '2020-06-01'::date,
          'a released month above the cursor is claimed next (release resets the cursor)');

-- enqueue: a higher-priority month arrives above the cursor
select public.enqueue_backfill_months('cur-urgent', '2019-01-01', '2019-01-01', 5);
select is((select month from public.claim_backfill_months(1, 'w', 60)), '2019-01-01'::date,
          'a newly enqueued higher-priority month is claimed next (enqueue resets the cursor)');

-- expiry: an expired lease above the cursor
reset role;
update public.backfill_log set lease_expires_at = now() - interval '1 second' where month = '2020-05-01';
set local role service_role;
select is((select month from public.claim_backfill_months(1, 'w', 60)), '2020-05-01'::date,
          'a month whose lease expired above the cursor is claimed next (expiry resets the cursor)');

-- retry_failed: a failed month re-queued above the cursor
select public.fail_backfill_month((select claim_token from public.backfill_log where month = '2020-06-01'), 'x', false);
select public.retry_failed_backfill_months('cur');
select is((select month from public.claim_backfill_months(1, 'w', 60)), '2020-06-01'::date,
          'a re-queued failed month is claimed next (retry_failed resets the cursor)');

-- nothing below the cursor: look again from the top
reset role;
select setval('backfill_internal.claim_cursor', backfill_internal.claim_cursor_key(-1000, '1900-01-01'));
set local role service_role;
select is((select month from public.claim_backfill_months(1, 'w', 60)), '2020-03-01'::date,
          'a cursor below every due month does not hide them: the claim walks again from the top');

-- a month written around the RPCs (here: straight into the table) above the cursor
reset role;
insert into public.backfill_log (source, month, priority) values ('cur-direct', '2030-01-01', 9);
select setval('backfill_internal.claim_cursor', backfill_internal.claim_cursor_key(0, '2020-02-01'));
select setval('backfill_internal.claim_cursor_checked_ms', (extract(epoch from clock_timestamp()) * 1000)::bigint);
set local role service_role;
select is((select month from public.claim_backfill_months(1, 'w', 60)), '2020-02-01'::date,
          'within the second, a claim trusts the cursor (the hidden month waits)');
reset role;
select setval('backfill_internal.claim_cursor_checked_ms', 0);
set local role service_role;
select is((select month from public.claim_backfill_months(1, 'w', 60)), '2030-01-01'::date,
          'the once-a-second walk from the top finds a month the cursor had hidden');
select is((select count(*)::int from public.backfill_log where status in ('pending', 'retry')), 1,
          'every month but one has been claimed exactly once: none lost along the way');

reset role;
select backfill_internal.reset_claim_cursor();
select * from finish();
rollback;
