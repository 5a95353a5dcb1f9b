-- The example processor's own table and its one write: the `calendar` processor of
-- backfill-worker loads one row per day of a month into example_calendar_days.
--
-- Exactly-once data from at-least-once processing: a month may be processed more than
-- once (a retry after a crash, a lease that expired mid-run), so the write is an upsert
-- on the natural key and a repeated month never duplicates a day. And it is fenced by
-- the claim token, in the same transaction: a worker whose claim was taken over writes
-- nothing.

create table public.example_calendar_days (
  source      text     not null,
  day         date     not null,
  weekday     smallint not null check (weekday between 1 and 7),
  iso_week    smallint not null check (iso_week between 1 and 53),
  is_weekend  boolean  not null,
  day_of_year smallint not null check (day_of_year between 1 and 366),
  loaded_at   timestamptz not null default now(),
  constraint example_calendar_days_pkey primary key (source, day)
);

alter table public.example_calendar_days enable row level security;
revoke all on table public.example_calendar_days from public, anon, authenticated;
grant select, insert, update, delete on table public.example_calendar_days to service_role;

-- Writes the days of the month held by p_claim_token; returns how many, or null when
-- the token no longer holds a month (nothing is written then). Days outside that
-- month are refused (22023) rather than silently written to another month.
create function public.load_example_calendar_month(p_claim_token uuid, p_days jsonb)
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_source text;
  v_month  date;
  v_count  integer;
begin
  perform backfill_internal.require_not_null('p_claim_token', p_claim_token);
  if jsonb_typeof(p_days) is distinct from 'array' then
    perform backfill_internal.invalid_argument('p_days', 'must be a JSON array of days');
  end if;

  -- Locking the claim's row keeps the reaper from ending the claim mid-write.
  select b.source, b.month into v_source, v_month
  from public.backfill_log b
  where b.claim_token = p_claim_token and b.status = 'processing'
  for update;
  if not found then
    return null;
  end if;

  if exists (select 1 from jsonb_array_elements(p_days) d
             where backfill_internal.month_of((d ->> 'day')::date) is distinct from v_month) then
    perform backfill_internal.invalid_argument(
      'p_days', format('must hold only days of %s', to_char(v_month, 'YYYY-MM')));
  end if;

  insert into public.example_calendar_days as c
    (source, day, weekday, iso_week, is_weekend, day_of_year)
  select v_source, (d ->> 'day')::date, (d ->> 'weekday')::smallint,
         (d ->> 'isoWeek')::smallint, (d ->> 'isWeekend')::boolean,
         (d ->> 'dayOfYear')::smallint
  from jsonb_array_elements(p_days) d
  on conflict (source, day) do update
    set weekday = excluded.weekday, iso_week = excluded.iso_week,
        is_weekend = excluded.is_weekend, day_of_year = excluded.day_of_year,
        loaded_at = now();
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;

revoke all on function public.load_example_calendar_month(uuid, jsonb) from public, anon, authenticated;
grant execute on function public.load_example_calendar_month(uuid, jsonb) to service_role;
