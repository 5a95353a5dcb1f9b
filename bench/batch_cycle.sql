-- A batch worker's cycle: claim 100 months, then complete them all in one call.
select array_agg(claim_token) as tokens from claim_backfill_months(100) \gset
select count(*) from complete_backfill_months(:tokens::uuid[]);
