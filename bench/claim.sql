select * from claim_backfill_months(:limit);
