-- Who may do what: only service_role uses the API and the table; anon, authenticated and
-- PUBLIC get 42501 everywhere; every function pins search_path = '' (invariant 6).
begin;
-- Other suites may be writing to this database while we run: hold them off until this
-- transaction ends (reads still pass), so only this file's rows are in view.
lock table public.backfill_log in exclusive mode;
select plan(58);

delete from public.backfill_log;
-- pgTAP lives in `extensions`; the roles below need to reach it to report (rolled back).
grant usage on schema extensions to anon, authenticated, service_role;

-- The API as the contract names it, with the calls used below (harmless arguments).
create temp table api (fn regprocedure, call text) on commit drop;
insert into api values
  ('public.enqueue_backfill_months(text, date, date, integer, integer)',
   $$select public.enqueue_backfill_months('privs', '2020-01-01', '2020-02-01')$$),
  ('public.claim_backfill_months(integer, text, integer, text)',
   $$select * from public.claim_backfill_months(1)$$),
  ('public.heartbeat_backfill_month(uuid, integer)',
   $$select public.heartbeat_backfill_month(gen_random_uuid())$$),
  ('public.complete_backfill_month(uuid, jsonb)',
   $$select public.complete_backfill_month(gen_random_uuid())$$),
  ('public.fail_backfill_month(uuid, text, boolean)',
   $$select public.fail_backfill_month(gen_random_uuid(), 'x')$$),
  ('public.release_backfill_month(uuid)',
   $$select public.release_backfill_month(gen_random_uuid())$$),
  ('public.reap_expired_backfill_leases()',
   $$select public.reap_expired_backfill_leases()$$),
  ('public.retry_failed_backfill_months(text, date, date)',
   $$select public.retry_failed_backfill_months()$$),
  ('public.peek_backfill_months(integer, text)',
   $$select * from public.peek_backfill_months()$$),
  ('public.backfill_progress(text)',
   $$select * from public.backfill_progress()$$),
  ('public.schedule_backfill_scheduler(text, integer, integer, text, text, text)',
   $$select * from public.schedule_backfill_scheduler(p_limit => 0)$$),
  ('public.unschedule_backfill_scheduler()',
   $$select public.unschedule_backfill_scheduler()$$);
grant select on api to anon, authenticated, service_role;

select is((select count(*)::int from api), 12, 'the API has the 12 functions of the contract');

-- ---------------------------------------------------------------- anon
set local role anon;
select throws_ok(call, '42501', null, 'anon may not call ' || fn::text) from api order by fn::text;
select throws_ok('select * from public.backfill_log', '42501', null, 'anon may not select from backfill_log');
select throws_ok($$insert into public.backfill_log (source, month) values ('x', '2020-01-01')$$,
                 '42501', null, 'anon may not insert into backfill_log');
select throws_ok($$update public.backfill_log set priority = 1$$, '42501', null, 'anon may not update backfill_log');
select throws_ok($$delete from public.backfill_log$$, '42501', null, 'anon may not delete from backfill_log');
select throws_ok($$select backfill_internal.month_of('2020-01-15')$$, '42501', null,
                 'anon may not call the backfill_internal helpers');
reset role;

-- ---------------------------------------------------------------- authenticated
set local role authenticated;
select throws_ok(call, '42501', null, 'authenticated may not call ' || fn::text) from api order by fn::text;
select throws_ok('select * from public.backfill_log', '42501', null, 'authenticated may not select from backfill_log');
select throws_ok($$insert into public.backfill_log (source, month) values ('x', '2020-01-01')$$,
                 '42501', null, 'authenticated may not insert into backfill_log');
select throws_ok($$update public.backfill_log set priority = 1$$, '42501', null, 'authenticated may not update backfill_log');
select throws_ok($$delete from public.backfill_log$$, '42501', null, 'authenticated may not delete from backfill_log');
select throws_ok($$select backfill_internal.expire_leases()$$, '42501', null,
                 'authenticated may not call the backfill_internal helpers');
reset role;

-- ---------------------------------------------------------------- catalog-wide rules
select is(
  array(select a.fn::text from api a
         where not has_function_privilege('service_role', a.fn, 'execute') order by 1),
  array[]::text[], 'service_role may execute every API function');

select is(
  array(select format('%s to %s', p.oid::regprocedure,
                      case when x.grantee = 0 then 'PUBLIC' else x.grantee::regrole::text end)
          from pg_proc p
          cross join lateral aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x
         where p.pronamespace in ('public'::regnamespace, 'backfill_internal'::regnamespace)
           and x.privilege_type = 'EXECUTE'
           and (x.grantee = 0 or x.grantee in ('anon'::regrole, 'authenticated'::regrole))
           and not exists (select 1 from pg_depend d
                            where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
         order by 1),
  array[]::text[],
  'no function in public or backfill_internal is executable by PUBLIC, anon or authenticated');

select is(
  array(select p.oid::regprocedure::text
          from pg_proc p
         where p.pronamespace in ('public'::regnamespace, 'backfill_internal'::regnamespace)
           and not coalesce(p.proconfig, '{}') @> array['search_path=""']
           and not exists (select 1 from pg_depend d
                            where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
         order by 1),
  array[]::text[],
  'every function in public and backfill_internal pins search_path = '''' (invariant 6)');

select cmp_ok(
  (select count(*)::int from pg_proc p where p.pronamespace = 'backfill_internal'::regnamespace),
  '>=', 7, 'the search_path rule above did look at the backfill_internal helpers');

select is(
  array(select p.oid::regprocedure::text from pg_proc p
         where p.pronamespace in ('public'::regnamespace, 'backfill_internal'::regnamespace)
           and p.prosecdef
           and not exists (select 1 from pg_depend d
                            where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
         order by 1),
  array['schedule_backfill_scheduler(text,integer,integer,text,text,text)',
        'unschedule_backfill_scheduler()'],
  'only the two pg_cron wrappers are security definer');

select ok(not has_schema_privilege('anon', 'backfill_internal', 'usage')
          and not has_schema_privilege('authenticated', 'backfill_internal', 'usage'),
          'anon and authenticated have no usage on schema backfill_internal');

select is(
  array(select p.oid::regprocedure::text from pg_proc p
         where p.pronamespace = 'backfill_internal'::regnamespace
           and (has_function_privilege('anon', p.oid, 'execute')
                or has_function_privilege('authenticated', p.oid, 'execute'))
         order by 1),
  array[]::text[], 'no backfill_internal helper is executable by anon or authenticated');

select ok(not has_table_privilege('anon', 'public.backfill_log', 'select, insert, update, delete, truncate, references, trigger')
          and not has_table_privilege('authenticated', 'public.backfill_log', 'select, insert, update, delete, truncate, references, trigger'),
          'anon and authenticated hold no privilege at all on backfill_log');

select ok(has_table_privilege('service_role', 'public.backfill_log', 'select')
          and has_table_privilege('service_role', 'public.backfill_log', 'insert')
          and has_table_privilege('service_role', 'public.backfill_log', 'update')
          and has_table_privilege('service_role', 'public.backfill_log', 'delete'),
          'service_role may select, insert, update and delete backfill_log');

-- ---------------------------------------------------------------- service_role, for real
set local role service_role;
select lives_ok(call, 'service_role can call ' || fn::text)
  from api where fn <> 'public.schedule_backfill_scheduler(text, integer, integer, text, text, text)'::regprocedure
 order by fn::text;
select throws_ok($$select * from public.schedule_backfill_scheduler(p_limit => 0)$$, '22023', null,
                 'service_role gets past the privilege check of schedule_backfill_scheduler (22023, not 42501)');
select lives_ok('select count(*) from public.backfill_log', 'service_role can read backfill_log despite RLS');
select is((select count(*)::int from public.backfill_log where source = 'privs'), 2,
          'service_role sees the rows its own enqueue wrote');
reset role;

select * from finish();
rollback;
