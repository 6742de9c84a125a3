-- Supabase-faithful database fixture: what a hosted Supabase project's database looks like
-- before AEF's migrations run. The one truth about Supabase for the test suite and `aef dev`.
-- Test and local use only: it never goes into supabase/migrations/.
--
-- Built from Supabase's public SQL, in the order Supabase's own `migrate.sh` applies it:
--   supabase/postgres @ 7db7e1a9e34b9ffb9b0e3372ccf08eb4fa772f4b (2024-10-23)
--     migrations/db/init-scripts/00000000000000-initial-schema.sql  roles, extensions schema,
--       default privileges, publication supabase_realtime
--     migrations/db/init-scripts/00000000000001-auth-schema.sql     auth schema, auth.users,
--       supabase_auth_admin
--     migrations/db/init-scripts/00000000000003-post-setup.sql      dashboard_user, search_path
--     migrations/db/migrations/10000000000000_demote-postgres.sql   postgres NOSUPERUSER ...
--     migrations/db/migrations/20211115181400_update-auth-permissions.sql,
--       20211118015519_create-realtime-schema.sql, 20211122051245/20211130151719 realtime
--       permissions, 20211124212715_update-auth-owner.sql,
--       20220609081115_grant-supabase-auth-admin-and-supabase-storage-admin-to-postgres.sql,
--       20221028101028/20231130133139 authenticator timeouts, 20221103090837_revoke_admin.sql,
--       20230201083204_grant_auth_roles_to_postgres.sql, 20230306081037 pg_monitor,
--       20230529180330_alter_api_roles_for_inherit.sql, 20240606060239 predefined roles
--     June 2025 (not in that snapshot; as Supabase announced it): on Postgres 16+ `postgres`
--       holds ADMIN OPTION on anon, authenticated, service_role and authenticator. Images
--       built before it lack it: set `aef.supabase_admin_option = off` before applying this
--       file to get such a project.
--   supabase/auth @ bc32168e13fdc928c98b449fc76bc3fdb9a293c5 (2026-08-20)
--     migrations/00_init_auth_schema.up.sql, 20220224000811_update_auth_functions.up.sql,
--     20220531120530_add_auth_jwt_function.up.sql and the column additions to auth.users
--     (email_confirmed_at, phone*, banned_until, deleted_at, is_sso_user, is_anonymous)
--   supabase/realtime @ 833cf36c3a3603fff5ae5a8a0ce473a21d5fedd4 (2026-08-21)
--     lib/realtime/tenants/repo/migrations/: 20231204144023_set_required_grants,
--     20240401105812_create_realtime_admin_and_move_ownership, 20240523004032 (messages,
--     grants, realtime.topic), 20241030150047_messages_partitioning, 20241108114728 (uuid id),
--     20250905041441 replay index, 20260514120000 binary_payload, 20260605120000 realtime.send
--     and realtime.send_binary as they are today, 20260707120000_restrict_realtime_schema
--     (owners); lib/realtime/tenants.ex create_messages_partitions (daily partitions).
--
-- Left out (extensions or services that cannot be installed here, and nothing AEF uses):
-- pgjwt, pgsodium/vault, pg_graphql, pg_cron, pg_net, pg_stat_statements, supautils (so
-- realtime's 20260707 migration takes its non-supautils branch: postgres stays a member of
-- supabase_realtime_admin), the storage schema (only its admin role is created, for the
-- membership postgres has), the event triggers of post-setup, Realtime's postgres_changes
-- objects (realtime.subscription, list_changes, ...), the other auth tables (sessions, mfa,
-- identities, ...).
--
-- How it runs: on a cluster whose bootstrap superuser is `supabase_admin` (local/supabase_pg.py),
-- applied as supabase_admin to each fresh database; `postgres` is then demoted exactly as
-- Supabase does. Applied by a plain server's superuser `postgres` (`aef dev` on Debian's
-- server) everything but the demotion happens. Safe to apply twice.

-- Cluster roles (initial-schema, auth-schema, post-setup; realtime 20240401105812) -----------
do $$
begin
  if not exists (select from pg_roles where rolname = 'supabase_admin') then
    create role supabase_admin superuser createdb createrole replication bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'postgres') then
    create role postgres superuser login;  -- migrate.sh; demoted below
  end if;
  if not exists (select from pg_roles where rolname = 'supabase_replication_admin') then
    create user supabase_replication_admin with login replication;
  end if;
  if not exists (select from pg_roles where rolname = 'supabase_read_only_user') then
    create role supabase_read_only_user with login bypassrls;
    grant pg_read_all_data to supabase_read_only_user;
  end if;
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create user authenticator noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'supabase_auth_admin') then
    create user supabase_auth_admin noinherit createrole login noreplication;
  end if;
  if not exists (select from pg_roles where rolname = 'supabase_storage_admin') then
    create user supabase_storage_admin noinherit createrole login noreplication;
  end if;
  if not exists (select from pg_roles where rolname = 'dashboard_user') then
    create role dashboard_user nosuperuser createdb createrole replication;
  end if;
  if not exists (select from pg_roles where rolname = 'supabase_realtime_admin') then
    create role supabase_realtime_admin with noinherit nologin noreplication;
  end if;
end
$$;

grant anon to authenticator;
grant authenticated to authenticator;
grant service_role to authenticator;
-- (initial-schema grants supabase_admin to authenticator; 20221103090837 revokes it again)

alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';
alter role authenticator set lock_timeout to '8s';
alter role supabase_auth_admin set search_path = "auth";
alter role postgres set search_path to "$user", public, extensions;
-- 20230529180330_alter_api_roles_for_inherit
alter role authenticated inherit;
alter role anon inherit;
alter role service_role inherit;

-- The database (initial-schema, run as postgres while it was still a superuser) ------------
do $$
begin
  if not exists (select from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
    alter publication supabase_realtime owner to postgres;
  end if;
end
$$;
-- the database belongs to postgres, as Supabase's `postgres` database does
do $$ begin execute format('alter database %I owner to postgres', current_database()); end $$;

create schema if not exists extensions;
alter schema extensions owner to postgres;
create extension if not exists "uuid-ossp" with schema extensions;
create extension if not exists pgcrypto with schema extensions;

grant usage on schema public to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on sequences to postgres, anon, authenticated, service_role;
grant usage on schema extensions to postgres, anon, authenticated, service_role;
alter default privileges for user supabase_admin in schema public grant all on sequences to postgres, anon, authenticated, service_role;
alter default privileges for user supabase_admin in schema public grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for user supabase_admin in schema public grant all on functions to postgres, anon, authenticated, service_role;

-- auth (supabase/postgres auth-schema + supabase/auth migrations) ---------------------------
create schema if not exists auth authorization supabase_admin;

create table if not exists auth.users (
  instance_id uuid null,
  id uuid not null unique,
  aud varchar(255) null,
  "role" varchar(255) null,
  email varchar(255) null unique,
  encrypted_password varchar(255) null,
  email_confirmed_at timestamptz null,
  invited_at timestamptz null,
  confirmation_token varchar(255) null,
  confirmation_sent_at timestamptz null,
  recovery_token varchar(255) null,
  recovery_sent_at timestamptz null,
  email_change_token_new varchar(255) null,
  email_change varchar(255) null,
  email_change_sent_at timestamptz null,
  last_sign_in_at timestamptz null,
  raw_app_meta_data jsonb null,
  raw_user_meta_data jsonb null,
  is_super_admin bool null,
  created_at timestamptz null,
  updated_at timestamptz null,
  phone text null unique default null,
  phone_confirmed_at timestamptz null default null,
  phone_change text null default '',
  phone_change_token varchar(255) null default '',
  phone_change_sent_at timestamptz null default null,
  confirmed_at timestamptz generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
  banned_until timestamptz null,
  deleted_at timestamptz null,
  is_sso_user boolean not null default false,
  is_anonymous boolean not null default false,
  constraint users_pkey primary key (id)
);
create index if not exists users_instance_id_email_idx on auth.users using btree (instance_id, email);
create index if not exists users_instance_id_idx on auth.users using btree (instance_id);
comment on table auth.users is 'Auth: Stores user login data within a secure schema.';

create table if not exists auth.schema_migrations (
  "version" varchar(255) not null,
  constraint schema_migrations_pkey primary key ("version")
);

-- 20220224000811_update_auth_functions, 20220531120530_add_auth_jwt_function
create or replace function auth.uid() returns uuid language sql stable as $$
  select
  coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
create or replace function auth.role() returns text language sql stable as $$
  select
  coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
create or replace function auth.email() returns text language sql stable as $$
  select
  coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;
create or replace function auth.jwt() returns jsonb language sql stable as $$
  select
    coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;

grant usage on schema auth to anon, authenticated, service_role;
grant all privileges on schema auth to supabase_auth_admin;
grant all privileges on all tables in schema auth to supabase_auth_admin;
grant all privileges on all sequences in schema auth to supabase_auth_admin;
alter table auth.users owner to supabase_auth_admin;
alter table auth.schema_migrations owner to supabase_auth_admin;
alter function auth.uid owner to supabase_auth_admin;
alter function auth.role owner to supabase_auth_admin;
alter function auth.email owner to supabase_auth_admin;
alter function auth.jwt owner to supabase_auth_admin;

-- post-setup: dashboard_user; demote-postgres; update-auth-permissions
grant all on schema auth to dashboard_user;
grant all on schema extensions to dashboard_user;
grant all on all tables in schema auth to dashboard_user;
grant all on all sequences in schema auth to dashboard_user;
grant all on all routines in schema auth to dashboard_user;
do $$ begin execute format('grant all on database %I to postgres, dashboard_user', current_database()); end $$;
grant all on schema auth to postgres;
grant all on schema extensions to postgres;
grant all on all tables in schema auth to postgres;
grant all on all tables in schema extensions to postgres;
grant all on all sequences in schema auth to postgres;
grant all on all sequences in schema extensions to postgres;
grant all on all routines in schema auth to postgres;
grant all on all routines in schema extensions to postgres;
alter default privileges for role supabase_auth_admin in schema auth grant all on tables to postgres, dashboard_user;
alter default privileges for role supabase_auth_admin in schema auth grant all on sequences to postgres, dashboard_user;
alter default privileges for role supabase_auth_admin in schema auth grant all on routines to postgres, dashboard_user;

-- realtime (supabase/postgres realtime schema + supabase/realtime tenant migrations) ---------
create schema if not exists realtime;
alter schema realtime owner to supabase_admin;
grant usage on schema realtime to postgres;
alter default privileges for role supabase_admin in schema realtime grant all on tables to postgres, dashboard_user;
alter default privileges for role supabase_admin in schema realtime grant all on sequences to postgres, dashboard_user;
alter default privileges for role supabase_admin in schema realtime grant all on routines to postgres, dashboard_user;

create table if not exists realtime.messages (
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  updated_at timestamp without time zone not null default now(),
  inserted_at timestamp without time zone not null default now(),
  id uuid not null default gen_random_uuid(),
  binary_payload bytea,
  primary key (id, inserted_at)
) partition by range (inserted_at);
do $$
begin
  if not exists (select from pg_constraint where conname = 'messages_payload_exclusive') then
    alter table realtime.messages add constraint messages_payload_exclusive
      check (payload is null or binary_payload is null) not valid;
  end if;
end
$$;
alter table realtime.messages enable row level security;
create index if not exists messages_inserted_at_topic_index on realtime.messages
  (inserted_at desc, topic) where extension = 'broadcast' and private is true;
alter table realtime.messages owner to supabase_realtime_admin;
grant select on realtime.messages to postgres, anon, authenticated, service_role;
grant update on realtime.messages to postgres, anon, authenticated, service_role;
grant insert on realtime.messages to postgres, anon, authenticated, service_role;

create or replace function realtime.topic() returns text as $$
select nullif(current_setting('realtime.topic', true), '')::text;
$$ language sql stable;

create or replace function realtime.send(payload jsonb, event text, topic text, private boolean default true ) returns void
as $$
declare
  generated_id uuid;
  final_payload jsonb;
begin
  begin
    generated_id := gen_random_uuid();
    -- Check if payload has an 'id' key, if not, add the generated UUID
    if payload ? 'id' then
      final_payload := payload;
    else
      final_payload := jsonb_set(payload, '{id}', to_jsonb(generated_id));
    end if;
    -- Set the topic configuration
    execute format('SET LOCAL realtime.topic TO %L', topic);
    insert into realtime.messages (id, payload, event, topic, private, extension)
    values (generated_id, final_payload, event, topic, private, 'broadcast');
  exception
    when others then
      raise warning 'WarnSendingBroadcastMessage: %', sqlerrm;
  end;
end;
$$
language plpgsql;

create or replace function realtime.send_binary(
  payload bytea,
  event text,
  topic text,
  private boolean default true
) returns void as $$
declare
  generated_id uuid;
begin
  begin
    generated_id := gen_random_uuid();
    execute format('SET LOCAL realtime.topic TO %L', topic);
    insert into realtime.messages (id, binary_payload, event, topic, private, extension)
    values (generated_id, payload, event, topic, private, 'broadcast');
  exception
    when others then
      raise warning 'WarnSendingBroadcastMessage: %', sqlerrm;
  end;
end;
$$ language plpgsql;

alter function realtime.topic() owner to supabase_realtime_admin;
alter function realtime.send(jsonb, text, text, boolean) owner to supabase_realtime_admin;
alter function realtime.send_binary(bytea, text, text, boolean) owner to supabase_realtime_admin;

-- 20231204144023_set_required_grants, 20240401105812_create_realtime_admin_and_move_ownership
grant usage on schema realtime to postgres, anon, authenticated, service_role;
grant select on all tables in schema realtime to postgres, anon, authenticated, service_role;
grant execute on all functions in schema realtime to postgres, anon, authenticated, service_role;
grant all privileges on schema realtime to supabase_realtime_admin;
grant all privileges on all tables in schema realtime to supabase_realtime_admin;
grant all privileges on all functions in schema realtime to supabase_realtime_admin;

-- Daily partitions: local/realtime/partitions.sql, applied right after this file.

-- Local only: the Realtime-protocol server in local/realtime polls realtime.messages for new
-- rows (Supabase's server reads them through logical replication instead; docs/performance.md,
-- "Load"). It used to be woken by a NOTIFY per row, but a NOTIFY makes its transaction take the
-- cluster-wide notify-queue lock at commit and hold it through the WAL flush, so every writer's
-- commit waited for every other's. Two local differences from Supabase's table let the poller
-- read cheaply and in order: `inserted_at` is the insert's own clock (Supabase: the
-- transaction's start), so an insert that waited for another transaction's commit sorts after
-- it; and an index on `inserted_at` for every broadcast row, public ones too.
drop trigger if exists notify_local_server on realtime.messages;
drop function if exists realtime.notify_local_server();
alter table realtime.messages alter column inserted_at set default clock_timestamp();
create index if not exists messages_local_poll_index on realtime.messages (inserted_at)
  where extension = 'broadcast';

-- postgres: demoted, and the memberships Supabase gives it ------------------------------------
grant supabase_auth_admin, supabase_storage_admin to postgres;
grant anon, authenticated, service_role to postgres;
grant pg_monitor to postgres;
grant pg_read_all_data, pg_signal_backend to postgres;
grant supabase_realtime_admin to postgres;
do $$
declare
  admin_option boolean := coalesce(current_setting('aef.supabase_admin_option', true), '') <> 'off';
begin
  if current_setting('server_version_num')::int >= 160000 then
    if admin_option then
      grant anon, authenticated, service_role, authenticator to postgres with admin option;
    else
      revoke admin option for anon, authenticated, service_role, authenticator from postgres;
    end if;
  end if;
  if current_user = 'supabase_admin' then
    alter role postgres nosuperuser createdb createrole login replication bypassrls;
  else
    raise notice 'applied by %, not supabase_admin: postgres keeps its attributes', current_user;
  end if;
end
$$;
