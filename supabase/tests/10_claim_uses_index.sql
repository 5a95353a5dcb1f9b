-- Invariant 7 (Fast at scale): with 200k+ rows, 95% of them completed, a claim walks the
-- partial claim-order indexes and never scans the table.
begin;
-- Other suites may be writing to this database while we run: hold them off until this
-- transaction ends (reads still pass), so only this file's rows are in view.
lock table public.backfill_log in exclusive mode;
select plan(14);

delete from public.backfill_log;
grant usage on schema extensions to service_role;

-- 100 sources x 2100 months = 210,000 rows; every 20th month is pending, the rest completed.
insert into public.backfill_log (source, month, status, attempts, claim_token, claimed_at, completed_at, priority)
select 'src-' || s,
       (date '1850-01-01' + make_interval(months => m))::date,
       case when m % 20 = 0 then 'pending' else 'completed' end,
       case when m % 20 = 0 then 0 else 1 end,
       case when m % 20 = 0 then null else gen_random_uuid() end,
       case when m % 20 = 0 then null else now() end,
       case when m % 20 = 0 then null else now() end,
       s % 3
  from generate_series(1, 100) s, generate_series(0, 2099) m;
analyze public.backfill_log;

select cmp_ok((select count(*)::int from public.backfill_log), '>=', 200000, 'the table holds 200k+ rows');

-- plan_of(query): its EXPLAIN (format json) as text
create function pg_temp.plan_of(p_query text) returns text language plpgsql as $$
declare
  v_plan json;
begin
  execute 'explain (format json) ' || p_query into v_plan;
  return v_plan::text;
end;
$$;

create temp table plans as select
  pg_temp.plan_of($$select d.source, d.month from public.backfill_log d
                     where d.status in ('pending', 'retry') and d.next_attempt_at <= now()
                     order by d.priority desc, d.month desc limit 10 for update skip locked$$) as across_sources,
  pg_temp.plan_of($$select d.source, d.month from public.backfill_log d
                     where d.source = 'src-42' and d.status in ('pending', 'retry') and d.next_attempt_at <= now()
                     order by d.priority desc, d.month desc limit 10 for update skip locked$$) as in_source;

select ok((select across_sources like '%"Index Scan"%"Index Name": "backfill_log_claim_order_idx"%' from plans),
          'the claim''s candidate query walks backfill_log_claim_order_idx with an Index Scan');
select ok((select across_sources not like '%Seq Scan%' and across_sources not like '%"Sort"%' from plans),
          'the claim''s candidate query neither scans the table nor sorts');
select ok((select in_source like '%"Index Scan"%"Index Name": "backfill_log_claim_order_by_source_idx"%' from plans),
          'the one-source candidate query walks backfill_log_claim_order_by_source_idx with an Index Scan');
select ok((select in_source not like '%Seq Scan%' and in_source not like '%"Sort"%' from plans),
          'the one-source candidate query neither scans the table nor sorts');

-- The real function: this transaction's own scan counters (pg_stat_xact_user_tables and the
-- per-index pg_stat_get_xact_numscans).
create function pg_temp.seq_scans() returns bigint language sql as $$
  select coalesce(seq_scan, 0) from pg_stat_xact_user_tables where relid = 'public.backfill_log'::regclass
$$;
-- (PostgreSQL 15 has no pg_stat_xact_user_indexes view; this is the function behind its idx_scan)
create function pg_temp.idx_scans(p_index text) returns bigint language sql as $$
  select pg_stat_get_xact_numscans(to_regclass('public.' || p_index))
$$;
create temp table counters (step text primary key, seq bigint, idx_all bigint, idx_src bigint);
create temp table claimed (n bigserial, source text, month date, attempt int, claim_token uuid, lease_expires_at timestamptz);
grant all on counters, claimed, claimed_n_seq to service_role;
grant execute on function pg_temp.seq_scans(), pg_temp.idx_scans(text) to service_role;

insert into counters values ('start', pg_temp.seq_scans(), pg_temp.idx_scans('backfill_log_claim_order_idx'),
                             pg_temp.idx_scans('backfill_log_claim_order_by_source_idx'));
set local role service_role;
insert into claimed (source, month, attempt, claim_token, lease_expires_at) select * from public.claim_backfill_months(10);
reset role;
insert into counters values ('all', pg_temp.seq_scans(), pg_temp.idx_scans('backfill_log_claim_order_idx'),
                             pg_temp.idx_scans('backfill_log_claim_order_by_source_idx'));

select is((select count(*)::int from claimed), 10, 'claim_backfill_months(10) claims 10 months out of 210k rows');
select results_eq(
  $$select b.priority, c.month from claimed c join public.backfill_log b using (source, month) order by c.n$$,
  $$select priority, month from public.backfill_log
     where status in ('pending', 'processing') order by priority desc, month desc limit 10$$,
  'they are the first 10 waiting months in claim order, returned in that order');
select is((select a.seq - s.seq from counters a, counters s where a.step = 'all' and s.step = 'start'), 0::bigint,
          'claim_backfill_months(10) does not scan backfill_log sequentially');
select cmp_ok((select a.idx_all - s.idx_all from counters a, counters s where a.step = 'all' and s.step = 'start'), '>', 0::bigint,
              'claim_backfill_months(10) scans backfill_log_claim_order_idx');

insert into counters values ('before source', pg_temp.seq_scans(), pg_temp.idx_scans('backfill_log_claim_order_idx'),
                             pg_temp.idx_scans('backfill_log_claim_order_by_source_idx'));
set local role service_role;
insert into claimed (source, month, attempt, claim_token, lease_expires_at) select * from public.claim_backfill_months(10, p_source => 'src-42');
reset role;
insert into counters values ('source', pg_temp.seq_scans(), pg_temp.idx_scans('backfill_log_claim_order_idx'),
                             pg_temp.idx_scans('backfill_log_claim_order_by_source_idx'));
select is((select count(*)::int from claimed where source = 'src-42'), 10,
          'claim_backfill_months(10, p_source) claims 10 months of that source');
select is((select a.seq - s.seq from counters a, counters s where a.step = 'source' and s.step = 'before source'), 0::bigint,
          'claim_backfill_months(10, p_source => ...) does not scan backfill_log sequentially');
select cmp_ok((select a.idx_src - s.idx_src from counters a, counters s where a.step = 'source' and s.step = 'before source'), '>', 0::bigint,
              'claim_backfill_months(10, p_source => ...) scans backfill_log_claim_order_by_source_idx');

-- Past plpgsql's fifth call its cached plan may turn generic: it must still not scan the table.
insert into counters values ('before many', pg_temp.seq_scans(), pg_temp.idx_scans('backfill_log_claim_order_idx'),
                             pg_temp.idx_scans('backfill_log_claim_order_by_source_idx'));
set local role service_role;
select count(*) from (
  select (select count(*) from public.claim_backfill_months(5, p_source => case when g % 2 = 0 then null else 'src-7' end))
    from generate_series(1, 12) g) t;
reset role;
insert into counters values ('many', pg_temp.seq_scans(), pg_temp.idx_scans('backfill_log_claim_order_idx'),
                             pg_temp.idx_scans('backfill_log_claim_order_by_source_idx'));
select is((select a.seq - s.seq from counters a, counters s where a.step = 'many' and s.step = 'before many'), 0::bigint,
          'twelve more claims, alternating all-sources and one-source (generic plans), never scan the table');
select is((select count(*)::int from public.backfill_log where status = 'processing'), 80,
          'those claims took 60 more months (80 in all)');

select * from finish();
rollback;
