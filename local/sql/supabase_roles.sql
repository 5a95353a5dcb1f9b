-- LOCAL STAND-IN — never copy into supabase/migrations.
-- A hosted Supabase project already has these roles, schemas and grants; a bare PostgreSQL
-- cluster does not. This recreates the parts the project depends on, including the OLD default
-- that grants everything in `public` to anon and authenticated, so that the migrations are
-- tested against the least safe starting point they may meet (they must revoke explicitly).
-- Idempotent: applied by `deno task local start` before every migration run.

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
end
$$;

-- The gateway connects as authenticator and switches to the caller's role, as PostgREST does.
grant anon, authenticated, service_role to authenticator;

alter role postgres with password 'postgres';

create schema if not exists extensions;
-- What a Supabase project has in `extensions` from day one; pgTAP for supabase/tests.
create extension if not exists pgcrypto with schema extensions;
create extension if not exists "uuid-ossp" with schema extensions;
create extension if not exists pg_stat_statements with schema extensions;
create extension if not exists pgtap with schema extensions;

alter database postgres set search_path = "$user", public, extensions;

grant usage on schema public to anon, authenticated, service_role;
grant usage on schema extensions to anon, authenticated, service_role;

-- Supabase's historical default privileges in `public` (objects created by postgres).
alter default privileges for role postgres in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on functions to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on sequences to anon, authenticated, service_role;

-- Objects that predate the first migration get the same grants. Only then: re-granting on a
-- restarted stack would undo the migrations' revokes, which `db push` does not re-run.
do $$
begin
  if to_regclass('supabase_migrations.schema_migrations') is null then
    grant all on all tables in schema public to anon, authenticated, service_role;
    grant all on all functions in schema public to anon, authenticated, service_role;
    grant all on all sequences in schema public to anon, authenticated, service_role;
  end if;
end
$$;
