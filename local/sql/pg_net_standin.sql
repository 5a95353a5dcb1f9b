-- LOCAL STAND-IN for pg_net — never copy into supabase/migrations.
-- Same names and signatures as pg_net 0.x (net.http_post, net.http_get, net.http_request_queue,
-- net._http_response). The functions only queue the request, as pg_net's do: delivery happens
-- after commit in a separate process (the stack's pg_net delivery worker), which deletes the
-- queued row and records the outcome in net._http_response. A rolled-back transaction therefore
-- sends nothing, exactly like pg_net.
-- Idempotent: applied by `deno task local start` before the migrations.

create schema if not exists net;

create table if not exists net.http_request_queue (
  id bigserial primary key,
  method text not null check (method in ('GET', 'POST', 'DELETE')),
  url text not null,
  headers jsonb not null default '{}'::jsonb,
  body bytea,
  timeout_milliseconds integer not null,
  created_at timestamptz not null default now()
);

create table if not exists net._http_response (
  id bigint,
  status_code integer,
  content_type text,
  headers jsonb,
  content text,
  timed_out boolean,
  error_msg text,
  created timestamptz not null default now()
);
create index if not exists _http_response_created_idx on net._http_response (created);
create index if not exists _http_response_id_idx on net._http_response (id);

-- Appends pg_net-style url-encoded query parameters.
create or replace function net._url_with_params(url text, params jsonb)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when params is null or params = '{}'::jsonb then url
    else url || case when strpos(url, '?') > 0 then '&' else '?' end || (
      select string_agg(
        replace(replace(replace(replace(replace(key, '%', '%25'), '&', '%26'), '=', '%3D'), ' ', '%20'), '?', '%3F')
        || '=' ||
        replace(replace(replace(replace(replace(value, '%', '%25'), '&', '%26'), '=', '%3D'), ' ', '%20'), '?', '%3F'),
        '&')
      from jsonb_each_text(params)
    )
  end;
$$;

create or replace function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint
language plpgsql
volatile
set search_path = ''
as $$
declare
  request_id bigint;
  content_type text;
begin
  -- pg_net adds the JSON content type when the caller's headers omit it.
  select h.value into content_type
    from jsonb_each_text(coalesce(headers, '{}'::jsonb)) as h(key, value)
   where lower(h.key) = 'content-type'
   limit 1;
  if content_type is null then
    headers := coalesce(headers, '{}'::jsonb) || '{"Content-Type": "application/json"}'::jsonb;
  end if;
  if body is null then
    raise exception 'body must not be null';
  end if;

  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values ('POST', net._url_with_params(url, params), headers,
          convert_to(body::text, 'UTF8'), timeout_milliseconds)
  returning id into request_id;
  return request_id;
end
$$;

create or replace function net.http_get(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint
language plpgsql
volatile
strict
set search_path = ''
as $$
declare
  request_id bigint;
begin
  insert into net.http_request_queue (method, url, headers, timeout_milliseconds)
  values ('GET', net._url_with_params(url, params), headers, timeout_milliseconds)
  returning id into request_id;
  return request_id;
end
$$;

alter schema net owner to postgres;
alter table net.http_request_queue owner to postgres;
alter table net._http_response owner to postgres;

revoke all on schema net from public, anon, authenticated;
revoke all on all tables in schema net from public, anon, authenticated;
revoke all on all sequences in schema net from public, anon, authenticated;
revoke all on all functions in schema net from public, anon, authenticated;
grant usage on schema net to service_role;
grant execute on function net.http_post(text, jsonb, jsonb, jsonb, integer) to service_role;
grant execute on function net.http_get(text, jsonb, jsonb, integer) to service_role;
