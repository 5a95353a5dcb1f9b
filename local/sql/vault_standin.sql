-- LOCAL STAND-IN for Supabase Vault — never copy into supabase/migrations.
-- Same names and signatures as Vault (vault.secrets, vault.create_secret, vault.update_secret,
-- vault.decrypted_secrets) so that migrations and jobs reading secrets run unchanged, but NO
-- ENCRYPTION: `secret` is stored in clear text and decrypted_secret is simply that text.
-- Idempotent: applied by `deno task local start` before the migrations.

create schema if not exists vault;

create table if not exists vault.secrets (
  id uuid primary key default gen_random_uuid(),
  name text unique,
  description text not null default '',
  secret text not null,
  key_id uuid,
  nonce bytea,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create or replace function vault.create_secret(
  new_secret text,
  new_name text default null,
  new_description text default '',
  new_key_id uuid default null
) returns uuid
language sql
set search_path = ''
as $$
  insert into vault.secrets (secret, name, description, key_id)
  values (new_secret, new_name, coalesce(new_description, ''), new_key_id)
  returning id;
$$;

create or replace function vault.update_secret(
  secret_id uuid,
  new_secret text default null,
  new_name text default null,
  new_description text default null,
  new_key_id uuid default null
) returns void
language sql
set search_path = ''
as $$
  update vault.secrets
     set secret = coalesce(new_secret, secret),
         name = coalesce(new_name, name),
         description = coalesce(new_description, description),
         key_id = coalesce(new_key_id, key_id),
         updated_at = now()
   where id = secret_id;
$$;

create or replace view vault.decrypted_secrets as
  select id, name, description, secret, secret as decrypted_secret, key_id, nonce,
         created_at, updated_at
    from vault.secrets;

alter schema vault owner to postgres;
alter table vault.secrets owner to postgres;
alter view vault.decrypted_secrets owner to postgres;
alter function vault.create_secret(text, text, text, uuid) owner to postgres;
alter function vault.update_secret(uuid, text, text, text, uuid) owner to postgres;

-- Like hosted Vault: nobody but postgres (and definer functions it owns) reads secrets.
revoke all on schema vault from public, anon, authenticated;
revoke all on all tables in schema vault from public, anon, authenticated;
revoke all on all functions in schema vault from public, anon, authenticated;
