-- Completing many claims at once, for services that claim in batches
-- (claim_backfill_months(p_limit => 100)): one round trip and one transaction instead
-- of one per month.
--
-- The same promise as complete_backfill_month, token by token (invariant 2, Fenced):
-- a token is recorded only while it holds its month (processing); a token that already
-- completed its month is reported true again and changes nothing; a stale token is
-- reported false and changes nothing. One bad token does not fail the others.

create function public.complete_backfill_months(
  p_claim_tokens uuid[],
  p_results      jsonb[] default null)
returns table (claim_token uuid, recorded boolean)
language plpgsql
volatile
set search_path = ''
as $$
#variable_conflict use_column
begin
  perform backfill_internal.require_not_null('p_claim_tokens', p_claim_tokens);
  perform backfill_internal.require_between('p_claim_tokens', cardinality(p_claim_tokens), 1, 1000);
  if array_position(p_claim_tokens, null) is not null then
    perform backfill_internal.invalid_argument('p_claim_tokens', 'must not hold a null token');
  end if;
  if p_results is not null and cardinality(p_results) <> cardinality(p_claim_tokens) then
    perform backfill_internal.invalid_argument('p_results',
      format('must hold one result per token (%s results for %s tokens)',
             cardinality(p_results), cardinality(p_claim_tokens)));
  end if;

  return query
  with input as (
    -- unnest pads a missing p_results with nulls: no result recorded.
    select i.token, i.result, i.ord
    from unnest(p_claim_tokens, p_results) with ordinality as i(token, result, ord)
  ),
  recorded as (
    update public.backfill_log b
    set status           = 'completed',
        result           = i.result,
        completed_at     = now(),
        lease_expires_at = null,
        last_error       = null,
        updated_at       = now()
    from input i
    where b.claim_token = i.token
      and b.status = 'processing'
    returning b.claim_token
  )
  -- The statement's snapshot does not see its own update: a token is true when this
  -- statement recorded it, or when its row was already completed by it before.
  select i.token,
         exists (select 1 from recorded r where r.claim_token = i.token)
         or exists (select 1 from public.backfill_log b
                    where b.claim_token = i.token and b.status = 'completed')
  from input i
  order by i.ord;
end;
$$;

revoke all on function public.complete_backfill_months(uuid[], jsonb[]) from public, anon, authenticated;
grant execute on function public.complete_backfill_months(uuid[], jsonb[]) to service_role;
