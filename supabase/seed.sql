-- Seed for `supabase db reset` / `supabase start` where Docker exists: one small
-- backfill for the example `calendar` processor, so a fresh local project has work to
-- watch. (The Docker-free local stack of this repo seeds its demo in local/demo.ts.)
select public.enqueue_backfill_months('calendar:seed', '2024-01-01', '2024-12-01');
