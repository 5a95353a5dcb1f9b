-- backfill_log: columns, key, the check constraints (each proven by the impossible state it
-- refuses), the indexes the claim and the token lookups rely on, and RLS.
begin;
-- Other suites may be writing to this database while we run: hold them off until this
-- transaction ends (reads still pass), so only this file's rows are in view.
lock table public.backfill_log in exclusive mode;
select plan(49);

delete from public.backfill_log;

-- ---------------------------------------------------------------- shape
select has_table('public', 'backfill_log', 'table public.backfill_log exists');

select results_eq(
  $$select a.attname::text collate "default", format_type(a.atttypid, a.atttypmod),
           case when a.attnotnull then 'NO' else 'YES' end
      from pg_attribute a
     where a.attrelid = 'public.backfill_log'::regclass and a.attnum > 0 and not a.attisdropped
     order by a.attname$$,
  $$values ('attempts'::text, 'integer'::text, 'NO'::text),
           ('claim_token', 'uuid', 'YES'),
           ('claimed_at', 'timestamp with time zone', 'YES'),
           ('claimed_by', 'text', 'YES'),
           ('completed_at', 'timestamp with time zone', 'YES'),
           ('created_at', 'timestamp with time zone', 'NO'),
           ('heartbeat_at', 'timestamp with time zone', 'YES'),
           ('last_error', 'text', 'YES'),
           ('lease_expires_at', 'timestamp with time zone', 'YES'),
           ('max_attempts', 'integer', 'NO'),
           ('month', 'date', 'NO'),
           ('next_attempt_at', 'timestamp with time zone', 'NO'),
           ('priority', 'integer', 'NO'),
           ('result', 'jsonb', 'YES'),
           ('source', 'text', 'NO'),
           ('status', 'text', 'NO'),
           ('updated_at', 'timestamp with time zone', 'NO')$$,
  'backfill_log has exactly the contract columns (plus heartbeat_at) with their types and nullability');

select col_is_pk('public', 'backfill_log', array['source', 'month'],
                 'the primary key is (source, month)');

select results_eq(
  $$insert into public.backfill_log (source, month) values ('defaults', '2020-01-01')
    returning status, priority, attempts, max_attempts, next_attempt_at = now(), claim_token is null$$,
  $$values ('pending'::text, 0, 0, 5, true, true)$$,
  'a bare insert is a pending, untried, unclaimed month with priority 0 and 5 attempts, due now');

-- ---------------------------------------------------------------- one valid row per status
-- (so each refusal below is caused by the one thing it changes)
select lives_ok($$insert into public.backfill_log (source, month) values ('s', '2020-01-01')$$,
                'a valid pending row is accepted');
select lives_ok(
  $$insert into public.backfill_log (source, month, status, attempts, claim_token, claimed_at, lease_expires_at)
    values ('s', '2020-02-01', 'processing', 1, gen_random_uuid(), now(), now() + interval '1 minute')$$,
  'a valid processing row (token, claimed_at, lease, attempts >= 1) is accepted');
select lives_ok(
  $$insert into public.backfill_log (source, month, status, attempts, last_error)
    values ('s', '2020-03-01', 'retry', 1, 'boom')$$,
  'a valid retry row (tried, with its error) is accepted');
select lives_ok(
  $$insert into public.backfill_log (source, month, status, attempts, claim_token, claimed_at, completed_at)
    values ('s', '2020-04-01', 'completed', 1, gen_random_uuid(), now(), now())$$,
  'a valid completed row (completed_at and its completing token) is accepted');
select lives_ok(
  $$insert into public.backfill_log (source, month, status, attempts, last_error)
    values ('s', '2020-05-01', 'failed', 5, 'boom')$$,
  'a valid failed row (with its error) is accepted');

-- ---------------------------------------------------------------- impossible inserts
select throws_ok($$insert into public.backfill_log (source, month) values ('s', '2020-06-15')$$,
                 '23514', null, 'a month that is not the first day of a month is refused');
select throws_ok($$insert into public.backfill_log (source, month, status) values ('s', '2020-06-01', 'done')$$,
                 '23514', null, 'an unknown status is refused');
select throws_ok($$insert into public.backfill_log (source, month) values ('', '2020-06-01')$$,
                 '23514', null, 'an empty source is refused');
select throws_ok($$insert into public.backfill_log (source, month) values (repeat('x', 201), '2020-06-01')$$,
                 '23514', null, 'a source longer than 200 characters is refused');
select throws_ok($$insert into public.backfill_log (source, month, max_attempts) values ('s', '2020-06-01', 0)$$,
                 '23514', null, 'max_attempts below 1 is refused');
select throws_ok($$insert into public.backfill_log (source, month, max_attempts) values ('s', '2020-06-01', 101)$$,
                 '23514', null, 'max_attempts above 100 is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, max_attempts, last_error)
    values ('s', '2020-06-01', 'failed', 4, 3, 'boom')$$,
  '23514', null, 'attempts above max_attempts is refused (invariant 3)');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, last_error)
    values ('s', '2020-06-01', 'failed', -1, 'boom')$$,
  '23514', null, 'negative attempts are refused');
select throws_ok($$insert into public.backfill_log (source, month, attempts) values ('s', '2020-06-01', 1)$$,
                 '23514', null, 'a pending row with attempts made is refused (pending means untried)');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, last_error)
    values ('s', '2020-06-01', 'retry', 0, 'boom')$$,
  '23514', null, 'a retry row with no attempt made is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts)
    values ('s', '2020-06-01', 'retry', 1)$$,
  '23514', null, 'a retry row without last_error is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, max_attempts, last_error)
    values ('s', '2020-06-01', 'retry', 3, 3, 'boom')$$,
  '23514', null, 'a waiting (retry) row with no attempt left is refused, so a claim can never exceed max_attempts');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, claim_token, claimed_at)
    values ('s', '2020-06-01', 'processing', 1, gen_random_uuid(), now())$$,
  '23514', null, 'a processing row without a lease is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, claimed_at, lease_expires_at)
    values ('s', '2020-06-01', 'processing', 1, now(), now() + interval '1 minute')$$,
  '23514', null, 'a processing row without a claim token is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, claim_token, lease_expires_at)
    values ('s', '2020-06-01', 'processing', 1, gen_random_uuid(), now() + interval '1 minute')$$,
  '23514', null, 'a processing row without claimed_at is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, claim_token, claimed_at, lease_expires_at)
    values ('s', '2020-06-01', 'processing', 0, gen_random_uuid(), now(), now() + interval '1 minute')$$,
  '23514', null, 'a processing row with no attempt counted is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, lease_expires_at) values ('s', '2020-06-01', now())$$,
  '23514', null, 'a lease on a row that is not processing is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, claim_token, claimed_at)
    values ('s', '2020-06-01', 'completed', 1, gen_random_uuid(), now())$$,
  '23514', null, 'a completed row without completed_at is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, claimed_at, completed_at)
    values ('s', '2020-06-01', 'completed', 1, now(), now())$$,
  '23514', null, 'a completed row without its completing token is refused');
select throws_ok($$insert into public.backfill_log (source, month, completed_at) values ('s', '2020-06-01', now())$$,
                 '23514', null, 'completed_at on a row that is not completed is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, last_error, claim_token)
    values ('s', '2020-06-01', 'failed', 1, 'boom', gen_random_uuid())$$,
  '23514', null, 'a claim token on a failed row is refused (invariant 2: ended claims drop their token)');
select throws_ok(
  $$insert into public.backfill_log (source, month, claim_token) values ('s', '2020-06-01', gen_random_uuid())$$,
  '23514', null, 'a claim token on a pending row is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, last_error, claim_token)
    values ('s', '2020-06-01', 'retry', 1, 'boom', gen_random_uuid())$$,
  '23514', null, 'a claim token on a retry row is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts) values ('s', '2020-06-01', 'failed', 1)$$,
  '23514', null, 'a failed row without last_error is refused');
select throws_ok($$insert into public.backfill_log (source, month, priority) values ('s', '2020-06-01', null)$$,
                 '23502', null, 'a null priority is refused');
select throws_ok($$insert into public.backfill_log (source, month) values ('s', '2020-01-01')$$,
                 '23505', null, 'a second row for the same (source, month) is refused');
select throws_ok(
  $$insert into public.backfill_log (source, month, status, attempts, claim_token, claimed_at, completed_at)
    select 's', '2020-07-01', 'completed', 1, claim_token, now(), now()
      from public.backfill_log where source = 's' and month = '2020-04-01'$$,
  '23505', null, 'a claim token already used by another month is refused (a token names one claim)');

-- ---------------------------------------------------------------- impossible updates
select throws_ok($$update public.backfill_log set completed_at = null where source = 's' and month = '2020-04-01'$$,
                 '23514', null, 'clearing completed_at of a completed row is refused');
select throws_ok($$update public.backfill_log set lease_expires_at = null where source = 's' and month = '2020-02-01'$$,
                 '23514', null, 'dropping the lease of a processing row is refused');
select throws_ok($$update public.backfill_log set status = 'failed', last_error = 'x', lease_expires_at = null
                    where source = 's' and month = '2020-02-01'$$,
                 '23514', null, 'ending a processing row as failed while keeping its token is refused');
select throws_ok($$update public.backfill_log set attempts = 6 where source = 's' and month = '2020-05-01'$$,
                 '23514', null, 'raising attempts above max_attempts is refused');
select throws_ok($$update public.backfill_log set month = '2020-01-02' where source = 's' and month = '2020-01-01'$$,
                 '23514', null, 'moving a month off the first day is refused');

-- ---------------------------------------------------------------- indexes
select is(
  (select pg_get_indexdef(indexrelid) from pg_index
    where indexrelid = to_regclass('public.backfill_log_claim_order_idx')),
  'CREATE INDEX backfill_log_claim_order_idx ON public.backfill_log USING btree (priority DESC, month DESC) WHERE (status = ANY (ARRAY[''pending''::text, ''retry''::text]))',
  'the claim-order index covers (priority desc, month desc) of the waiting rows only');
select is(
  (select pg_get_indexdef(indexrelid) from pg_index
    where indexrelid = to_regclass('public.backfill_log_claim_order_by_source_idx')),
  'CREATE INDEX backfill_log_claim_order_by_source_idx ON public.backfill_log USING btree (source, priority DESC, month DESC) WHERE (status = ANY (ARRAY[''pending''::text, ''retry''::text]))',
  'the per-source claim-order index covers (source, priority desc, month desc) of the waiting rows only');
select ok(
  (select indisunique and pg_get_indexdef(indexrelid) like '%(claim_token)%'
     from pg_index where indexrelid = to_regclass('public.backfill_log_claim_token_key')),
  'claim_token has a unique index');
select ok(
  (select pg_get_indexdef(indexrelid) like '%(lease_expires_at)%'
     from pg_index where indexrelid = to_regclass('public.backfill_log_lease_expiry_idx')),
  'lease_expires_at has an index for the reaper');
select is(
  (select count(*)::int from pg_index i
    where i.indrelid = 'public.backfill_log'::regclass and not i.indisvalid),
  0, 'every index on backfill_log is valid');

-- ---------------------------------------------------------------- RLS
select ok((select relrowsecurity from pg_class where oid = 'public.backfill_log'::regclass),
          'row level security is enabled on backfill_log');
select is(
  (select count(*)::int from pg_policies
    where schemaname = 'public' and tablename = 'backfill_log'
      and (roles && array['anon', 'authenticated', 'public']::name[])),
  0, 'no RLS policy opens backfill_log to anon, authenticated or public');

-- ---------------------------------------------------------------- timestamps default
select ok(
  (select bool_and(created_at = now() and updated_at = now()) from public.backfill_log where source = 's'),
  'created_at and updated_at default to now()');

select * from finish();
rollback;
