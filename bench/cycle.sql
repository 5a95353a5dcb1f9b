-- Claim, then complete with the token: two transactions, as a worker does.
select claim_token from claim_backfill_months(1) \gset
select complete_backfill_month(:claim_token::uuid);
