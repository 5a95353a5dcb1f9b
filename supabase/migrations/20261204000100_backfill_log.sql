-- backfill_log: one row per (source, month) of a month-by-month backfill.
--
-- The row is the whole state machine:
--
--   pending ──claim──▶ processing ──complete──▶ completed
--      ▲                 │  │  │
--      └──release────────┘  │  └──fail (attempts spent / not retryable)──▶ failed
--   retry ◀──fail / lease expired (reaper or next claim)                     │
--      └──claim──▶ processing              retry_failed_backfill_months ◀────┘ (back to pending)
--
-- The constraints below make the impossible states unrepresentable, so a bug in any
-- function fails loudly instead of corrupting the queue.

create table public.backfill_log (
  source           text        not null,
  month            date        not null,
  status           text        not null default 'pending',
  priority         integer     not null default 0,
  attempts         integer     not null default 0,
  max_attempts     integer     not null default 5,
  next_attempt_at  timestamptz not null default now(),
  claim_token      uuid,
  claimed_by       text,
  claimed_at       timestamptz,
  lease_expires_at timestamptz,
  heartbeat_at     timestamptz,
  last_error       text,
  result           jsonb,
  completed_at     timestamptz,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),

  constraint backfill_log_pkey primary key (source, month),
  constraint backfill_log_source_check
    check (source <> '' and length(source) <= 200),
  constraint backfill_log_month_is_first_day
    check (extract(day from month) = 1),
  constraint backfill_log_status_check
    check (status in ('pending', 'processing', 'retry', 'completed', 'failed')),
  constraint backfill_log_max_attempts_check
    check (max_attempts between 1 and 100),
  -- Invariant 3 (Counted): attempts are claims not released, never above max_attempts.
  constraint backfill_log_attempts_check
    check (attempts between 0 and max_attempts),
  -- A month waiting to be claimed always has an attempt left, so a claim can never
  -- push attempts past max_attempts; pending means never tried, retry means tried.
  constraint backfill_log_waiting_has_attempt_left
    check (status not in ('pending', 'retry') or attempts < max_attempts),
  constraint backfill_log_pending_is_untried
    check (status <> 'pending' or attempts = 0),
  constraint backfill_log_retry_is_tried
    check (status <> 'retry' or (attempts >= 1 and last_error is not null)),
  -- Exactly the processing rows hold a lease; a processing row is a live claim.
  constraint backfill_log_lease_iff_processing
    check ((status = 'processing') = (lease_expires_at is not null)),
  constraint backfill_log_processing_is_claimed
    check (status <> 'processing'
           or (claim_token is not null and claimed_at is not null and attempts >= 1)),
  -- A completed row keeps the token that completed it, so that token may repeat its
  -- complete idempotently; every other ended claim drops its token (invariant 2, Fenced).
  constraint backfill_log_token_only_while_held_or_completed
    check (claim_token is null or status in ('processing', 'completed')),
  constraint backfill_log_completed_has_completed_at
    check ((status = 'completed') = (completed_at is not null)),
  constraint backfill_log_completed_has_token
    check (status <> 'completed' or claim_token is not null),
  constraint backfill_log_failed_has_error
    check (status <> 'failed' or last_error is not null)
);

comment on table public.backfill_log is
  'One row per (source, month) of a backfill; written only through the *_backfill_* RPCs.';
comment on column public.backfill_log.heartbeat_at is
  'Last heartbeat of the current claim; set once its worker has started, null before.';

-- Invariant 7 (Fast at scale): the claim walks these in claim order and stops after
-- p_limit rows. They hold only waiting rows, so completed, failed and in-flight rows
-- never lengthen the walk.
create index backfill_log_claim_order_idx
  on public.backfill_log (priority desc, month desc)
  where status in ('pending', 'retry');

create index backfill_log_claim_order_by_source_idx
  on public.backfill_log (source, priority desc, month desc)
  where status in ('pending', 'retry');

-- Expired leases, oldest first. The predicate is on lease_expires_at (equivalent to
-- status = 'processing' by constraint) and not on status: with `where status =
-- 'processing'` the planner was seen to prefer this index over the token index for the
-- token lookups below, and claim-then-complete fell about tenfold (shared/NOTES.md).
create index backfill_log_lease_expiry_idx
  on public.backfill_log (lease_expires_at)
  where lease_expires_at is not null;

-- Every heartbeat, complete, fail and release finds its row by token. Unique: a token
-- names one claim of one month, ever.
create unique index backfill_log_claim_token_key
  on public.backfill_log (claim_token)
  where claim_token is not null;

-- Operator re-queue walks only the failed rows.
create index backfill_log_failed_idx
  on public.backfill_log (source, month)
  where status = 'failed';

-- Only service_role reads or writes the table. Revoked explicitly because older
-- Supabase projects grant everything in public to anon and authenticated by default.
alter table public.backfill_log enable row level security;
revoke all on table public.backfill_log from public, anon, authenticated;
grant select, insert, update, delete on table public.backfill_log to service_role;
