-- AEF schema: documents, executions, steps, checkpoints, logs, the event outbox (broadcast
-- through Realtime), commands to live runners, secrets, rate limits, idempotency keys.
-- Row-level security on every table; the database refuses illegal state transitions.
-- Idempotent: safe to apply twice. Never touches an existing `sops` table.

create schema if not exists aef_private;
revoke all on schema aef_private from public;

-- Roles: NOLOGIN roles the functions and the runner assume per transaction ----------------
do $$
begin
  -- the functions, with the caller's JWT claims set: own rows only
  if not exists (select from pg_roles where rolname = 'aef_api') then
    create role aef_api nologin inherit;
  end if;
  -- the runner, scoped to the one execution whose id + token it presents
  if not exists (select from pg_roles where rolname = 'aef_runner') then
    create role aef_runner nologin noinherit;
  end if;
  -- scheduled and bookkeeping work (sweeper, launcher): AEF tables only
  if not exists (select from pg_roles where rolname = 'aef_service') then
    create role aef_service nologin noinherit;
  end if;
  -- logins an operator enables with a password (alter role ... login password ...)
  if not exists (select from pg_roles where rolname = 'aef_functions') then
    create role aef_functions nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'aef_runner_login') then
    create role aef_runner_login nologin noinherit;
  end if;
end
$$;

-- aef_api acts as the user: it inherits what `authenticated` may read (e.g. `sops` under its
-- existing policies, `auth.uid()`) and adds writes to the user's own AEF rows. On Postgres 16+
-- granting `authenticated` needs ADMIN OPTION on it, which `postgres` lacks on Supabase images
-- built before June 2025: say what to do instead of stopping half-way with a bare error.
do $$
begin
  if not pg_has_role('aef_api', 'authenticated', 'MEMBER') then
    begin
      grant authenticated to aef_api;
    exception when insufficient_privilege then
      raise exception 'AEF setup: % may not grant the role authenticated to aef_api', current_user
        using detail = 'On Postgres 16 and later granting a role needs ADMIN OPTION on it; '
                       'Supabase projects whose image predates June 2025 do not give postgres '
                       'ADMIN OPTION on authenticated.',
              hint = 'Upgrade the project''s Postgres image (Dashboard > Project Settings > '
                     'Infrastructure), or ask Supabase support to run "grant authenticated to '
                     'aef_api;" on the project; then apply the migrations again (they are safe to '
                     're-run).';
    end;
  end if;
end
$$;
grant aef_api, aef_service to aef_functions;
grant aef_runner to aef_runner_login;
grant usage on schema public to aef_api, aef_runner, aef_service;
grant usage on schema aef_private to authenticated, aef_api, aef_runner, aef_service;
-- No `grant usage on schema auth`: on Supabase `postgres` holds no grant option on auth, so it
-- would be a silent no-op. aef_api reaches auth.uid() through `authenticated`; everything else
-- that reads auth.users is a security definer function owned by `postgres`.

-- The existing application's SOP table: created only when absent, never altered -----------
do $$
begin
  if to_regclass('public.sops') is null then
    create table public.sops (
      id uuid primary key default gen_random_uuid(),
      job_id uuid not null unique,
      user_id uuid not null references auth.users (id) on delete cascade,
      data jsonb not null,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create index sops_user_id_idx on public.sops (user_id);
    alter table public.sops enable row level security;
    create policy "Users can view their own SOPs" on public.sops
      for select to authenticated using ((select auth.uid()) = user_id);
    create policy "Users can insert their own SOPs" on public.sops
      for insert to authenticated with check ((select auth.uid()) = user_id);
    create policy "Users can update their own SOPs" on public.sops
      for update to authenticated using ((select auth.uid()) = user_id);
    create policy "Users can delete their own SOPs" on public.sops
      for delete to authenticated using ((select auth.uid()) = user_id);
  end if;
end
$$;

-- State machines (the Python twin is aef/states.py) -----------------------------------------
create or replace function aef_private.execution_transition_allowed(old_status text, new_status text)
returns boolean language sql immutable as $$
  select old_status = new_status
      or (old_status, new_status) in (values
        ('idle', 'queued'), ('idle', 'cancelled'),
        ('queued', 'starting'), ('queued', 'failed'), ('queued', 'cancelling'),
        ('queued', 'cancelled'),
        ('starting', 'running'), ('starting', 'failed'), ('starting', 'cancelling'),
        ('running', 'paused'), ('running', 'waiting_checkpoint'), ('running', 'waiting_recovery'),
        ('running', 'completed'), ('running', 'failed'), ('running', 'cancelling'),
        ('paused', 'running'), ('paused', 'failed'), ('paused', 'cancelling'),
        ('waiting_checkpoint', 'running'), ('waiting_checkpoint', 'failed'),
        ('waiting_checkpoint', 'cancelling'), ('waiting_checkpoint', 'cancelled'),
        ('waiting_recovery', 'running'), ('waiting_recovery', 'failed'),
        ('waiting_recovery', 'cancelling'),
        ('cancelling', 'cancelled'),
        -- failed is terminal for a runner; only a user's retry / resume re-queues it
        ('failed', 'queued'))
$$;

create or replace function aef_private.step_transition_allowed(old_status text, new_status text)
returns boolean language sql immutable as $$
  select old_status = new_status
      or (old_status, new_status) in (values
        ('pending', 'running'), ('pending', 'waiting_checkpoint'), ('pending', 'skipped'),
        ('pending', 'cancelled'),
        ('running', 'completed'), ('running', 'failed'), ('running', 'skipped'),
        ('running', 'cancelled'), ('running', 'waiting_checkpoint'),
        ('waiting_checkpoint', 'running'), ('waiting_checkpoint', 'completed'),
        ('waiting_checkpoint', 'skipped'), ('waiting_checkpoint', 'cancelled'),
        ('waiting_checkpoint', 'failed'),
        ('failed', 'running'), ('failed', 'skipped'), ('failed', 'cancelled'))
$$;

-- Tables --------------------------------------------------------------------------------------
create table if not exists public.aef_documents (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  sop_id uuid,
  title text not null check (length(title) <= 500),
  document jsonb not null,
  created_at timestamptz not null default now()
);
create index if not exists aef_documents_user_idx on public.aef_documents (user_id, created_at desc);

create table if not exists public.aef_executions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  document_id uuid not null references public.aef_documents (id) on delete cascade,
  status text not null default 'idle' check (status in (
    'idle', 'queued', 'starting', 'running', 'paused', 'waiting_checkpoint',
    'waiting_recovery', 'cancelling', 'completed', 'failed', 'cancelled')),
  step_ids text[],
  current_step_id text,
  progress smallint not null default 0 check (progress between 0 and 100),
  variables jsonb not null default '{}'::jsonb,
  browser jsonb not null default '{}'::jsonb,
  error jsonb,
  last_seq bigint not null default 0,
  runner_token_hash bytea,
  runner_id text,
  task_arn text,
  lease_expires_at timestamptz,
  heartbeat_at timestamptz,
  resume_from text,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz not null default now()
);
create index if not exists aef_executions_user_idx on public.aef_executions (user_id, created_at desc);
create index if not exists aef_executions_document_idx on public.aef_executions (document_id);
-- active executions per user (the cap) and the sweeper's scan of expired leases
create index if not exists aef_executions_active_idx on public.aef_executions (user_id)
  where status in ('queued', 'starting', 'running', 'paused', 'waiting_checkpoint',
                   'waiting_recovery', 'cancelling');
create index if not exists aef_executions_lease_idx on public.aef_executions (lease_expires_at)
  where status in ('starting', 'running', 'paused', 'waiting_checkpoint', 'waiting_recovery',
                   'cancelling');

create table if not exists public.aef_execution_steps (
  execution_id uuid not null references public.aef_executions (id) on delete cascade,
  step_id text not null,
  iteration integer not null default 0,
  user_id uuid not null,
  label text,
  status text not null default 'pending' check (status in (
    'pending', 'running', 'waiting_checkpoint', 'completed', 'failed', 'skipped', 'cancelled')),
  attempts integer not null default 0,
  error text,
  result jsonb,
  locator jsonb,
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz not null default now(),
  primary key (execution_id, step_id, iteration)
);
create index if not exists aef_execution_steps_user_idx on public.aef_execution_steps (user_id);

create table if not exists public.aef_checkpoints (
  id uuid primary key default gen_random_uuid(),
  execution_id uuid not null references public.aef_executions (id) on delete cascade,
  user_id uuid not null,
  step_id text not null,
  iteration integer not null default 0,
  type text not null check (type in ('before_step', 'decision', 'manual', 'error')),
  title text not null,
  description text,
  status text not null default 'pending'
    check (status in ('pending', 'approved', 'rejected', 'skipped', 'expired')),
  default_action text not null default 'reject' check (default_action in ('approve', 'reject', 'skip')),
  timeout_seconds integer not null default 300 check (timeout_seconds > 0),
  expires_at timestamptz not null,
  response jsonb,
  responded_by uuid,
  responded_at timestamptz,
  created_at timestamptz not null default now()
);
create index if not exists aef_checkpoints_execution_idx
  on public.aef_checkpoints (execution_id, created_at);
create index if not exists aef_checkpoints_pending_idx on public.aef_checkpoints (expires_at)
  where status = 'pending';
create index if not exists aef_checkpoints_user_idx on public.aef_checkpoints (user_id);
-- at most one open checkpoint per step run
create unique index if not exists aef_checkpoints_one_pending
  on public.aef_checkpoints (execution_id, step_id, iteration) where status = 'pending';

create table if not exists public.aef_logs (
  id bigint generated always as identity primary key,
  execution_id uuid not null references public.aef_executions (id) on delete cascade,
  user_id uuid not null,
  step_id text,
  level text not null default 'info' check (level in ('debug', 'info', 'warn', 'error')),
  category text not null default 'system' check (length(category) <= 64),
  message text not null check (length(message) <= 8000),
  details jsonb,
  created_at timestamptz not null default now()
);
-- keyset pagination: all logs, by level, by step
create index if not exists aef_logs_execution_idx on public.aef_logs (execution_id, id);
create index if not exists aef_logs_level_idx on public.aef_logs (execution_id, level, id);
create index if not exists aef_logs_step_idx on public.aef_logs (execution_id, step_id, id);
create index if not exists aef_logs_user_idx on public.aef_logs (user_id);

create table if not exists public.aef_events (
  execution_id uuid not null references public.aef_executions (id) on delete cascade,
  seq bigint not null,
  user_id uuid not null,
  type text not null
    check (type in ('execution_update', 'checkpoint_required', 'execution_complete', 'error')),
  message jsonb not null,
  created_at timestamptz not null default now(),
  primary key (execution_id, seq)
);
create index if not exists aef_events_user_idx on public.aef_events (user_id);

create table if not exists public.aef_commands (
  id bigint generated always as identity primary key,
  execution_id uuid not null references public.aef_executions (id) on delete cascade,
  user_id uuid not null,
  command text not null check (command in (
    'run_step', 'retry', 'skip', 'pause', 'resume', 'stop', 'takeover', 'release', 'input')),
  step_id text,
  payload jsonb not null default '{}'::jsonb,
  status text not null default 'pending' check (status in ('pending', 'done', 'rejected')),
  created_at timestamptz not null default now(),
  handled_at timestamptz
);
create index if not exists aef_commands_pending_idx on public.aef_commands (execution_id, id)
  where status = 'pending';
create index if not exists aef_commands_user_idx on public.aef_commands (user_id);

create table if not exists public.aef_execution_secrets (
  execution_id uuid primary key references public.aef_executions (id) on delete cascade,
  user_id uuid not null,
  secrets jsonb not null
);

create table if not exists public.aef_rate_limits (
  user_id uuid not null references auth.users (id) on delete cascade,
  bucket text not null,
  tokens double precision not null,
  updated_at timestamptz not null default now(),
  primary key (user_id, bucket)
);

create table if not exists public.aef_idempotency_keys (
  user_id uuid not null references auth.users (id) on delete cascade,
  key text not null check (length(key) between 1 and 255),
  request_hash text not null,
  execution_id uuid references public.aef_executions (id) on delete cascade,
  response jsonb,
  created_at timestamptz not null default now(),
  primary key (user_id, key)
);
create index if not exists aef_idempotency_keys_created_idx on public.aef_idempotency_keys (created_at);

-- Triggers ------------------------------------------------------------------------------------
create or replace function aef_private.notify_channel(execution_id uuid) returns text
language sql immutable as $$ select 'aef_exec_' || replace(execution_id::text, '-', '') $$;

-- Children take their owner from the execution: a writer cannot forge user_id.
create or replace function aef_private.set_owner_from_execution() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  select e.user_id into strict new.user_id from public.aef_executions e where e.id = new.execution_id;
  return new;
exception when no_data_found then
  raise foreign_key_violation using message = 'execution ' || new.execution_id || ' does not exist';
end
$$;

do $$
declare
  t text;
begin
  foreach t in array array['aef_execution_steps', 'aef_checkpoints', 'aef_logs', 'aef_commands',
                           'aef_execution_secrets']
  loop
    execute format('drop trigger if exists set_owner on public.%I', t);
    execute format('create trigger set_owner before insert on public.%I for each row '
                   'execute function aef_private.set_owner_from_execution()', t);
  end loop;
end
$$;

create or replace function aef_private.guard_execution() returns trigger
language plpgsql as $$
begin
  if not aef_private.execution_transition_allowed(old.status, new.status) then
    raise exception 'illegal execution transition % -> %', old.status, new.status
      using errcode = 'AEF01', detail = json_build_object(
        'entity', 'execution', 'from', old.status, 'to', new.status)::text;
  end if;
  if new.user_id <> old.user_id or new.document_id <> old.document_id then
    raise exception 'execution owner and document are immutable' using errcode = 'AEF01';
  end if;
  new.updated_at := now();
  if new.status in ('completed', 'failed', 'cancelled') and old.status <> new.status then
    new.finished_at := now();
    new.lease_expires_at := null;
  end if;
  if new.status = 'queued' and old.status <> 'queued' then
    new.finished_at := null;
  end if;
  return new;
end
$$;
drop trigger if exists guard_execution on public.aef_executions;
create trigger guard_execution before update on public.aef_executions
  for each row execute function aef_private.guard_execution();

-- Secrets live only while an execution can still use them; a stop request wakes the runner.
create or replace function aef_private.after_execution_status() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if new.status in ('completed', 'cancelled') then
    delete from public.aef_execution_secrets where execution_id = new.id;
  end if;
  if new.status = 'cancelling' then
    perform pg_notify(aef_private.notify_channel(new.id), '{"kind":"stop"}');
  end if;
  return null;
end
$$;
drop trigger if exists after_execution_status on public.aef_executions;
create trigger after_execution_status after update of status on public.aef_executions
  for each row when (old.status is distinct from new.status)
  execute function aef_private.after_execution_status();

create or replace function aef_private.guard_step() returns trigger
language plpgsql as $$
begin
  if not aef_private.step_transition_allowed(old.status, new.status) then
    raise exception 'illegal step transition % -> % (step %)', old.status, new.status, old.step_id
      using errcode = 'AEF01', detail = json_build_object(
        'entity', 'step', 'from', old.status, 'to', new.status)::text;
  end if;
  if new.execution_id <> old.execution_id or new.step_id <> old.step_id
     or new.iteration <> old.iteration or new.user_id <> old.user_id then
    raise exception 'step identity is immutable' using errcode = 'AEF01';
  end if;
  new.updated_at := now();
  return new;
end
$$;
drop trigger if exists guard_step on public.aef_execution_steps;
create trigger guard_step before update on public.aef_execution_steps
  for each row execute function aef_private.guard_step();

-- A checkpoint is answered exactly once; the answer wakes the waiting runner.
create or replace function aef_private.guard_checkpoint() returns trigger
language plpgsql as $$
begin
  if old.status <> 'pending' then
    raise exception 'checkpoint % already answered: %', old.id, old.status
      using errcode = 'AEF02', detail = json_build_object(
        'status', old.status, 'response', old.response, 'respondedAt', old.responded_at)::text;
  end if;
  if new.status not in ('approved', 'rejected', 'skipped', 'expired') then
    raise exception 'illegal checkpoint transition % -> %', old.status, new.status
      using errcode = 'AEF01', detail = json_build_object(
        'entity', 'checkpoint', 'from', old.status, 'to', new.status)::text;
  end if;
  if (new.id, new.execution_id, new.user_id, new.step_id, new.iteration)
     is distinct from (old.id, old.execution_id, old.user_id, old.step_id, old.iteration) then
    raise exception 'checkpoint identity is immutable' using errcode = 'AEF01';
  end if;
  new.responded_at := coalesce(new.responded_at, now());
  perform pg_notify(aef_private.notify_channel(new.execution_id),
                    json_build_object('kind', 'checkpoint', 'id', new.id)::text);
  return new;
end
$$;
drop trigger if exists guard_checkpoint on public.aef_checkpoints;
create trigger guard_checkpoint before update on public.aef_checkpoints
  for each row execute function aef_private.guard_checkpoint();

create or replace function aef_private.checkpoint_insert() returns trigger
language plpgsql as $$
begin
  if new.status <> 'pending' then
    raise exception 'a checkpoint starts pending' using errcode = 'AEF01';
  end if;
  new.expires_at := coalesce(new.expires_at, now() + make_interval(secs => new.timeout_seconds));
  return new;
end
$$;
drop trigger if exists checkpoint_insert on public.aef_checkpoints;
create trigger checkpoint_insert before insert on public.aef_checkpoints
  for each row execute function aef_private.checkpoint_insert();

create or replace function aef_private.notify_command() returns trigger
language plpgsql as $$
begin
  perform pg_notify(aef_private.notify_channel(new.execution_id),
                    json_build_object('kind', 'command', 'id', new.id)::text);
  return null;
end
$$;
drop trigger if exists notify_command on public.aef_commands;
create trigger notify_command after insert on public.aef_commands
  for each row execute function aef_private.notify_command();

-- Append-only: events and logs are never rewritten.
create or replace function aef_private.refuse_change() returns trigger
language plpgsql as $$
begin
  raise exception '% is append-only', tg_table_name using errcode = 'AEF03';
end
$$;
drop trigger if exists append_only on public.aef_events;
create trigger append_only before update on public.aef_events
  for each row execute function aef_private.refuse_change();
drop trigger if exists append_only on public.aef_logs;
create trigger append_only before update on public.aef_logs
  for each row execute function aef_private.refuse_change();

-- The live message (seed contract) for an execution at this moment.
-- Security invoker: the caller's RLS decides which checkpoints it sees (a definer function
-- would hand any caller the pending checkpoints of whatever execution id it passes in). The
-- broadcast trigger calls it from a definer function, i.e. as the table owner.
create or replace function aef_private.live_message(
  exec public.aef_executions, message_type text, message_seq bigint, extras jsonb
) returns jsonb language sql stable security invoker set search_path = '' as $$
  select jsonb_build_object(
    'type', message_type,
    'timestamp', to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'seq', message_seq,
    'execution', jsonb_build_object(
      'id', exec.id, 'status', exec.status, 'currentStep', exec.current_step_id,
      'progress', exec.progress),
    'browser', jsonb_build_object(
      'screenshot', exec.browser -> 'screenshot',
      'currentUrl', exec.browser -> 'currentUrl',
      'isReady', coalesce((exec.browser ->> 'isReady')::boolean, false),
      'lastAction', exec.browser -> 'lastAction'),
    'logs', coalesce(extras -> 'logs', '[]'::jsonb))
  || jsonb_build_object('checkpoints', coalesce(extras -> 'checkpoints', (
      select coalesce(jsonb_agg(jsonb_build_object(
        'id', c.id, 'stepId', c.step_id, 'type', c.type, 'title', c.title,
        'description', c.description, 'status', c.status, 'defaultAction', c.default_action,
        'timeoutSeconds', c.timeout_seconds,
        'expiresAt', to_char(c.expires_at at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'response', c.response) order by c.created_at), '[]'::jsonb)
      from public.aef_checkpoints c
      where c.execution_id = exec.id and c.status = 'pending')))
  || case when coalesce(extras -> 'error', exec.error) is not null
          then jsonb_build_object('error', coalesce(extras -> 'error', exec.error))
          else '{}'::jsonb end
$$;

-- Each event takes the next gapless seq under the execution's row lock and carries the
-- full live message; the broadcast happens in the same transaction (rolled back with it).
create or replace function aef_private.event_insert() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  exec public.aef_executions;
begin
  update public.aef_executions set last_seq = last_seq + 1
   where id = new.execution_id returning * into exec;
  if not found then
    raise foreign_key_violation using message = 'execution ' || new.execution_id || ' does not exist';
  end if;
  new.seq := exec.last_seq;
  new.user_id := exec.user_id;
  new.created_at := now();
  new.message := aef_private.live_message(exec, new.type, new.seq, new.message);
  return new;
end
$$;
drop trigger if exists event_insert on public.aef_events;
create trigger event_insert before insert on public.aef_events
  for each row execute function aef_private.event_insert();

create or replace function aef_private.event_broadcast() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform realtime.send(new.message, new.type, 'execution:' || new.execution_id::text, true);
  return null;
end
$$;
drop trigger if exists event_broadcast on public.aef_events;
create trigger event_broadcast after insert on public.aef_events
  for each row execute function aef_private.event_broadcast();

-- Identity helpers used by policies ------------------------------------------------------------
-- The runner's execution: the id it presents, only with the matching token.
create or replace function aef_private.runner_execution_id() returns uuid
language plpgsql stable security definer set search_path = '' as $$
declare
  presented text := nullif(current_setting('aef.execution_id', true), '');
  token text := nullif(current_setting('aef.runner_token', true), '');
  found_id uuid;
begin
  if presented is null or token is null
     or presented !~ '^[0-9a-fA-F-]{36}$' then
    return null;
  end if;
  select e.id into found_id from public.aef_executions e
   where e.id = presented::uuid and e.runner_token_hash = sha256(convert_to(token, 'UTF8'));
  return found_id;
end
$$;

-- `execution:<uuid>` -> the uuid, or null for any other topic.
create or replace function aef_private.topic_execution_id(topic text) returns uuid
language sql immutable as $$
  select case when topic ~ '^execution:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
              then substring(topic from 11)::uuid end
$$;

grant execute on all functions in schema aef_private to authenticated, aef_api, aef_runner, aef_service;

-- Privileges: Supabase grants API roles everything by default; take it back --------------------
do $$
declare
  t text;
begin
  foreach t in array array['aef_documents', 'aef_executions', 'aef_execution_steps',
                           'aef_checkpoints', 'aef_logs', 'aef_events', 'aef_commands',
                           'aef_execution_secrets', 'aef_rate_limits', 'aef_idempotency_keys']
  loop
    execute format('alter table public.%I enable row level security', t);
    execute format('revoke all on public.%I from public, anon, authenticated, service_role, '
                   'aef_api, aef_runner, aef_service', t);
    execute format('grant all on public.%I to aef_service', t);
    execute format('drop policy if exists aef_service_all on public.%I', t);
    execute format('create policy aef_service_all on public.%I for all to aef_service '
                   'using (true) with check (true)', t);
  end loop;

  -- supabase-js users read their own execution data, and write none of it
  foreach t in array array['aef_documents', 'aef_executions', 'aef_execution_steps',
                           'aef_checkpoints', 'aef_logs', 'aef_events']
  loop
    execute format('grant select on public.%I to authenticated', t);
    execute format('drop policy if exists owner_read on public.%I', t);
    execute format('create policy owner_read on public.%I for select to authenticated '
                   'using (user_id = (select auth.uid()))', t);
  end loop;

  -- the functions act for the caller: own rows only
  foreach t in array array['aef_documents', 'aef_executions', 'aef_execution_steps',
                           'aef_checkpoints', 'aef_logs', 'aef_events', 'aef_commands',
                           'aef_execution_secrets', 'aef_rate_limits', 'aef_idempotency_keys']
  loop
    execute format('drop policy if exists api_owner on public.%I', t);
    execute format('create policy api_owner on public.%I for all to aef_api '
                   'using (user_id = (select auth.uid())) '
                   'with check (user_id = (select auth.uid()))', t);
  end loop;

  -- the runner: only the execution it holds
  foreach t in array array['aef_execution_steps', 'aef_checkpoints', 'aef_logs', 'aef_events',
                           'aef_commands', 'aef_execution_secrets']
  loop
    execute format('drop policy if exists runner_own on public.%I', t);
    execute format('create policy runner_own on public.%I for all to aef_runner '
                   'using (execution_id = (select aef_private.runner_execution_id())) '
                   'with check (execution_id = (select aef_private.runner_execution_id()))', t);
  end loop;
end
$$;

grant select, insert on public.aef_documents to aef_api;
grant select, insert, update (status, step_ids, current_step_id, progress, error, resume_from,
  runner_token_hash, task_arn, started_at, lease_expires_at) on public.aef_executions to aef_api;
grant select on public.aef_execution_steps to aef_api;
grant select, update (status, response, responded_by, responded_at)
  on public.aef_checkpoints to aef_api;
grant select on public.aef_logs to aef_api;
grant select, insert (execution_id, type, message) on public.aef_events to aef_api;
grant select, insert (execution_id, command, step_id, payload) on public.aef_commands to aef_api;
grant insert, update, delete on public.aef_execution_secrets to aef_api;
-- `where execution_id = ...` and `on conflict (execution_id)` need SELECT on that column;
-- the secrets themselves stay unreadable for the API.
grant select (execution_id) on public.aef_execution_secrets to aef_api;
grant select, insert, update, delete on public.aef_rate_limits to aef_api;
grant select, insert, update, delete on public.aef_idempotency_keys to aef_api;

grant select on public.aef_documents to aef_runner;
grant select, update (status, current_step_id, progress, variables, browser, error, runner_id,
  lease_expires_at, heartbeat_at, started_at, resume_from) on public.aef_executions to aef_runner;
grant select, insert, update on public.aef_execution_steps to aef_runner;
grant select, insert, update (status, response, responded_at) on public.aef_checkpoints to aef_runner;
grant select, insert (execution_id, step_id, level, category, message, details)
  on public.aef_logs to aef_runner;
grant select, insert (execution_id, type, message) on public.aef_events to aef_runner;
grant select, update (status, handled_at) on public.aef_commands to aef_runner;
grant select on public.aef_execution_secrets to aef_runner;

drop policy if exists runner_own on public.aef_executions;
create policy runner_own on public.aef_executions for all to aef_runner
  using (id = (select aef_private.runner_execution_id()))
  with check (id = (select aef_private.runner_execution_id()));
drop policy if exists runner_own on public.aef_documents;
create policy runner_own on public.aef_documents for select to aef_runner
  using (id = (select e.document_id from public.aef_executions e
               where e.id = (select aef_private.runner_execution_id())));

-- Realtime: a user may join only their own executions' private topics ---------------------------
drop policy if exists aef_execution_topic_read on realtime.messages;
create policy aef_execution_topic_read on realtime.messages for select to authenticated
  using (
    realtime.messages.extension = 'broadcast'
    and exists (
      select 1 from public.aef_executions e
      where e.id = aef_private.topic_execution_id((select realtime.topic()))
        and e.user_id = (select auth.uid())));
