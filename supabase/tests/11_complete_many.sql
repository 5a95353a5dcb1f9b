-- complete_backfill_months: a batch of tokens completed in one call, each one fenced
-- exactly as complete_backfill_month fences it (invariant 2), bad input refused whole.
begin;
lock table public.backfill_log in exclusive mode;
select plan(14);

delete from public.backfill_log;
grant usage on schema extensions to service_role;
create temp table batch as select null::uuid as token, null::date as month limit 0;
grant all on batch to service_role;

set local role service_role;
select public.enqueue_backfill_months('cm', '2020-01-01', '2020-06-01');
insert into batch select claim_token, month from public.claim_backfill_months(4, 'w', 60, 'cm');

-- a superseded token: its month re-claimed after the lease ran out
reset role;
update public.backfill_log set lease_expires_at = now() - interval '1 second'
where claim_token = (select token from batch order by month limit 1);
set local role service_role;
create temp table stale as select token from batch order by month limit 1;
create temp table fresh as select claim_token as token from public.claim_backfill_months(1, 'w2', 60, 'cm');

select results_eq(
  $$select recorded from public.complete_backfill_months(
      (select array_agg(token order by month desc) from batch) || gen_random_uuid(),
      array['{"n": 1}', '{"n": 2}', '{"n": 3}', '{"n": 4}', '{"n": 5}']::jsonb[])$$,
  $$values (true), (true), (true), (false), (false)$$,
  'each live token is recorded; a superseded token and an unknown one are false, in input order');
select is((select count(*)::int from public.backfill_log where source = 'cm' and status = 'completed'), 3,
          'exactly the three live claims were completed');
select is((select result from public.backfill_log where claim_token = (select token from batch order by month desc limit 1)),
          '{"n": 1}'::jsonb, 'each token gets its own result, matched by position');
select is((select status from public.backfill_log b join stale s on b.claim_token = s.token), null,
          'the superseded token matches no row at all');
select is((select status from public.backfill_log b join fresh f on b.claim_token = f.token), 'processing',
          'the month re-claimed by another worker is untouched by the stale token');

create temp table before_repeat as select b::text as r from public.backfill_log b where source = 'cm';
select results_eq(
  $$select recorded from public.complete_backfill_months(
      (select array_agg(token order by month desc) from batch where token not in (select token from stale)),
      array['{"n": 9}', '{"n": 9}', '{"n": 9}']::jsonb[])$$,
  $$values (true), (true), (true)$$,
  'repeating the batch reports true again for the tokens that completed their months');
select set_eq($$select b::text from public.backfill_log b where source = 'cm'$$,
              $$select r from before_repeat$$, 'a repeated batch changes nothing (the first results stay)');
select results_eq(
  $$select recorded from public.complete_backfill_months(array[(select token from fresh)])$$,
  $$values (true)$$, 'without p_results the batch records null results');

-- bad input: 22023 naming the argument, nothing changed
create temp table before_bad as select b::text as r from public.backfill_log b;
select throws_ok($$select * from public.complete_backfill_months(null)$$, '22023', 'p_claim_tokens must not be null',
                 'a null token array is refused with 22023');
select throws_ok($$select * from public.complete_backfill_months('{}')$$, '22023', null,
                 'an empty token array is refused with 22023');
select throws_ok($$select * from public.complete_backfill_months(array[gen_random_uuid(), null])$$, '22023',
                 'p_claim_tokens must not hold a null token', 'a null token inside the array is refused with 22023');
select throws_ok($$select * from public.complete_backfill_months(array(select gen_random_uuid() from generate_series(1, 1001)))$$,
                 '22023', null, 'more than 1000 tokens are refused with 22023');
select throws_ok($$select * from public.complete_backfill_months(array[gen_random_uuid()], array['{}', '{}']::jsonb[])$$,
                 '22023', null, 'a result count that does not match the token count is refused with 22023');
select set_eq($$select b::text from public.backfill_log b$$, $$select r from before_bad$$,
              'refused batches changed nothing');

select * from finish();
rollback;
