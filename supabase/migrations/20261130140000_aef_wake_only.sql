-- A NOTIFY only ever wakes a runner; it never tells it anything.
--
-- Before: the triggers NOTIFYed `aef_exec_<execution id>` with payloads such as
-- {"kind":"stop"}, and any database session (another tenant as `authenticated`, any runner
-- login) could send the same payload with pg_notify() and LISTEN to anyone's channel.
-- Now: the channel is derived from the execution's current runner-token hash, which only the
-- service side and that execution's runner know:
--     'aef_wake_' || first 40 hex digits of sha256(runner_token_hash || 'aef-wake')
-- so other sessions can neither guess it (no leak of ids or timing) nor aim at it, and the
-- payload is empty: the woken runner reads the execution's status, its commands and its
-- checkpoint answers under its own role, where RLS and the state machines decide.
-- A new runner token (resume, claim) moves the channel: an old runner is no longer woken.
-- Idempotent: safe to apply twice.

create or replace function aef_private.wake_channel(execution uuid) returns text
language sql stable security definer set search_path = '' as $$
  select 'aef_wake_' || left(encode(sha256(e.runner_token_hash || convert_to('aef-wake', 'UTF8')),
                                   'hex'), 40)
    from public.aef_executions e
   where e.id = execution and e.runner_token_hash is not null
$$;

-- Wake the execution's runner (no payload). No channel yet (no runner token): nobody to wake.
create or replace function aef_private.wake_runner(execution uuid) returns void
language plpgsql volatile security definer set search_path = '' as $$
declare
  channel text := aef_private.wake_channel(execution);
begin
  if channel is not null then
    perform pg_notify(channel, '');
  end if;
end
$$;

-- Only the trigger functions below (their owner's rights) reach these two: the earlier bulk
-- `grant execute on all functions in schema aef_private` must not hand out the channel.
revoke execute on function aef_private.wake_channel(uuid) from public, anon, authenticated,
  aef_api, aef_runner, aef_service;
revoke execute on function aef_private.wake_runner(uuid) from public, anon, authenticated,
  aef_api, aef_runner, aef_service;

create or replace function aef_private.after_execution_status() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if new.status in ('completed', 'cancelled') then
    delete from public.aef_execution_secrets where execution_id = new.id;
  end if;
  if new.status = 'cancelling' then
    perform aef_private.wake_runner(new.id);
  end if;
  return null;
end
$$;

-- A checkpoint is answered exactly once; the answer wakes the waiting runner.
create or replace function aef_private.guard_checkpoint() returns trigger
language plpgsql security definer set search_path = '' as $$
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
  perform aef_private.wake_runner(new.execution_id);
  return new;
end
$$;

create or replace function aef_private.notify_command() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform aef_private.wake_runner(new.execution_id);
  return null;
end
$$;

-- The old id-derived channel name is not used any more.
drop function if exists aef_private.notify_channel(uuid);
