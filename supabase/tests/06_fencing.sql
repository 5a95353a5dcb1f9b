-- Invariant 2 (Fenced): a token superseded by a re-claim, or ended by complete, fail or
-- release, changes nothing; complete may be repeated by its own token.
begin;
-- Other suites may be writing to this database while we run: hold them off until this
-- transaction ends (reads still pass), so only this file's rows are in view.
lock table public.backfill_log in exclusive mode;
select plan(38);

delete from public.backfill_log;
grant usage on schema extensions to service_role;

create temp table tok (name text primary key, token uuid, source text, month date);
create temp table row_before (name text primary key, r text);
grant all on tok, row_before to service_role;

-- row_text(token name): the whole row its month is in, as text, for before/after checks.
create function pg_temp.row_text(p_name text) returns text language sql stable as $$
  select b::text from public.backfill_log b join tok t using (source, month) where t.name = p_name
$$;
grant execute on function pg_temp.row_text(text) to service_role;

set local role service_role;
select public.enqueue_backfill_months('f', '2020-01-01', '2020-05-01');

-- ---------------------------------------------------------------- complete with its own token
insert into tok select 'done', claim_token, source, month from public.claim_backfill_months(1, 'w', 60, 'f');
select is(public.complete_backfill_month((select token from tok where name = 'done'), '{"rows": 1}'), true,
          'complete with the live token returns true');
select results_eq(
  $$select status, result, completed_at = now(), lease_expires_at is null, claim_token
      from public.backfill_log b join tok t using (source, month) where t.name = 'done'$$,
  $$select 'completed'::text, '{"rows": 1}'::jsonb, true, true, token from tok where name = 'done'$$,
  'complete records the result and completed_at, drops the lease and keeps its own token');
insert into row_before values ('done', pg_temp.row_text('done'));
select is(public.complete_backfill_month((select token from tok where name = 'done'), '{"rows": 2}'), true,
          'complete repeated by the same token returns true again');
select is(pg_temp.row_text('done'), (select r from row_before where name = 'done'),
          'a repeated complete changes nothing (the first result stays)');
select is(public.heartbeat_backfill_month((select token from tok where name = 'done')), null,
          'heartbeat with the token of a completed month returns null');
select is(public.fail_backfill_month((select token from tok where name = 'done'), 'late'), null,
          'fail with the token of a completed month returns null');
select is(public.release_backfill_month((select token from tok where name = 'done')), false,
          'release with the token of a completed month returns false');
select is(pg_temp.row_text('done'), (select r from row_before where name = 'done'),
          'heartbeat, fail and release with a completed month''s token change nothing');

-- ---------------------------------------------------------------- superseded by a re-claim
insert into tok select 'old', claim_token, source, month from public.claim_backfill_months(1, 'dead-worker', 60, 'f');
reset role;
update public.backfill_log set lease_expires_at = now() - interval '1 second'
 where claim_token = (select token from tok where name = 'old');
set local role service_role;
insert into tok select 'new', claim_token, source, month from public.claim_backfill_months(1, 'new-worker', 60, 'f');
select ok((select o.month = n.month and o.token <> n.token from tok o, tok n where o.name = 'old' and n.name = 'new'),
          'the expired month is re-claimed with a new token');
insert into row_before values ('new', pg_temp.row_text('new'));
select is(public.heartbeat_backfill_month((select token from tok where name = 'old')), null,
          'heartbeat with a superseded token returns null');
select is(public.complete_backfill_month((select token from tok where name = 'old'), '{"stale": true}'), false,
          'complete with a superseded token returns false');
select is(public.fail_backfill_month((select token from tok where name = 'old'), 'stale'), null,
          'fail with a superseded token returns null');
select is(public.release_backfill_month((select token from tok where name = 'old')), false,
          'release with a superseded token returns false');
select is(pg_temp.row_text('new'), (select r from row_before where name = 'new'),
          'the superseded token''s calls leave the re-claimed row exactly as it was');
select results_eq(
  $$select status, attempts, claimed_by from public.backfill_log b join tok t using (source, month) where t.name = 'new'$$,
  $$values ('processing'::text, 2, 'new-worker'::text)$$,
  'the month stays held by the new claim, with both claims counted');
select isnt(public.heartbeat_backfill_month((select token from tok where name = 'new'), 120), null,
            'the new token still holds the month');

-- ---------------------------------------------------------------- ended by fail
select is(public.fail_backfill_month((select token from tok where name = 'new'), 'boom'), 'retry',
          'fail with the live token returns retry');
insert into row_before values ('failed', pg_temp.row_text('new'));
select is(public.complete_backfill_month((select token from tok where name = 'new')), false,
          'complete with a token ended by fail returns false');
select is(public.heartbeat_backfill_month((select token from tok where name = 'new')), null,
          'heartbeat with a token ended by fail returns null');
select is(public.fail_backfill_month((select token from tok where name = 'new'), 'again'), null,
          'fail repeated with a token ended by fail returns null');
select is(public.release_backfill_month((select token from tok where name = 'new')), false,
          'release with a token ended by fail returns false');
select is(pg_temp.row_text('new'), (select r from row_before where name = 'failed'),
          'calls with a token ended by fail change nothing');

-- ---------------------------------------------------------------- ended by release
insert into tok select 'rel', claim_token, source, month from public.claim_backfill_months(1, 'w', 60, 'f');
select is(public.release_backfill_month((select token from tok where name = 'rel')), true,
          'release with the live token returns true');
insert into row_before values ('rel', pg_temp.row_text('rel'));
select is(public.complete_backfill_month((select token from tok where name = 'rel')), false,
          'complete with a token ended by release returns false');
select is(public.heartbeat_backfill_month((select token from tok where name = 'rel')), null,
          'heartbeat with a token ended by release returns null');
select is(public.fail_backfill_month((select token from tok where name = 'rel'), 'late'), null,
          'fail with a token ended by release returns null');
select is(public.release_backfill_month((select token from tok where name = 'rel')), false,
          'release repeated with a token ended by release returns false');
select is(pg_temp.row_text('rel'), (select r from row_before where name = 'rel'),
          'calls with a token ended by release change nothing');

-- ---------------------------------------------------------------- started claims cannot be released
insert into tok select 'started', claim_token, source, month from public.claim_backfill_months(1, 'w', 60, 'f');
select isnt(public.heartbeat_backfill_month((select token from tok where name = 'started')), null,
            'the first heartbeat of a live claim is accepted');
insert into row_before values ('started', pg_temp.row_text('started'));
select is(public.release_backfill_month((select token from tok where name = 'started')), false,
          'release of a claim whose worker has sent a heartbeat returns false');
select is(pg_temp.row_text('started'), (select r from row_before where name = 'started'),
          'the refused release leaves the started claim held, its attempt counted');
select is(public.complete_backfill_month((select token from tok where name = 'started')), true,
          'the started claim can still complete');

-- ---------------------------------------------------------------- a token nobody issued
reset role;
create temp table whole_before as
  select md5(string_agg(b::text, '|' order by source, month)) h from public.backfill_log b;
grant select on whole_before to service_role;
set local role service_role;
select is(public.complete_backfill_month(gen_random_uuid()), false, 'complete with a random uuid returns false');
select is(public.heartbeat_backfill_month(gen_random_uuid()), null, 'heartbeat with a random uuid returns null');
select is(public.fail_backfill_month(gen_random_uuid(), 'x'), null, 'fail with a random uuid returns null');
select is(public.release_backfill_month(gen_random_uuid()), false, 'release with a random uuid returns false');
select is((select md5(string_agg(b::text, '|' order by source, month)) from public.backfill_log b),
          (select h from whole_before), 'calls with a random uuid change nothing');

-- ---------------------------------------------------------------- a completed token cannot complete another month
select is((select count(*)::int from public.backfill_log where claim_token = (select token from tok where name = 'done')), 1,
          'a completed token names exactly one month');

select * from finish();
rollback;
