-- Runner pool: long-running workers (`python -m runner --pool`) that each run several
-- executions, so "execute" reaches a warm Chromium in about a second instead of waiting for a
-- Fargate task to start.
--
-- Least privilege: a worker holds no standing right on any execution. It registers itself
-- (pool_heartbeat), and claims ONE dispatched execution at a time (claim_for_pool), which
-- hands back that execution's id and a fresh per-execution runner token
-- (aef_private.issue_runner_token). From then on the worker acts under that execution's
-- identity (`aef.execution_id` + `aef.runner_token`, RLS) exactly like a single runner, so it
-- can never read or write an execution it has not claimed, and loses it with its lease.
--
-- The launcher (API side) asks dispatch_to_pool first: true when live, non-draining workers
-- have a free slot (the execution is then marked for the pool and the workers are woken);
-- false, and the launcher starts a task of its own (ECS RunTask / a local subprocess).
-- A NOTIFY on `aef_pool` carries nothing: a woken worker reads the dispatched rows.
-- Idempotent: safe to apply twice.

create table if not exists aef_private.runner_pool_workers (
  worker_id text primary key check (length(worker_id) between 1 and 200),
  slots integer not null check (slots >= 0),
  active integer not null check (active >= 0),
  draining boolean not null default false,
  seen_at timestamptz not null default now()
);
revoke all on aef_private.runner_pool_workers from public;

-- Queued executions handed to the pool and not claimed yet (a private table, not a column:
-- neither users nor runners see it).
create table if not exists aef_private.runner_pool_dispatch (
  execution_id uuid primary key references public.aef_executions (id) on delete cascade,
  dispatched_at timestamptz not null default now()
);
revoke all on aef_private.runner_pool_dispatch from public;

-- A worker is live while its heartbeat is this recent (it beats every few seconds).
create or replace function aef_private.pool_live_seconds() returns integer
language sql immutable set search_path = '' as $$ select 15 $$;

-- Free slots of the live, non-draining workers minus the dispatches not claimed yet.
create or replace function aef_private.pool_free_slots() returns integer
language sql stable security definer set search_path = '' as $$
  select greatest(0,
    coalesce((select sum(greatest(0, w.slots - w.active))::integer
                from aef_private.runner_pool_workers w
               where not w.draining
                 and w.seen_at > now() - make_interval(secs => aef_private.pool_live_seconds())), 0)
    - (select count(*)::integer from aef_private.runner_pool_dispatch d
         join public.aef_executions e on e.id = d.execution_id
        where e.status = 'queued'))
$$;

-- The launcher's (and the sweeper's) question: can the pool take this queued execution now?
-- Serialized, so two launches never both take the last free slot.
create or replace function aef_private.dispatch_to_pool(execution uuid) returns boolean
language plpgsql volatile security definer set search_path = '' as $$
begin
  perform pg_advisory_xact_lock(hashtext('aef_private.runner_pool_dispatch'));
  if not exists (select from public.aef_executions e
                  where e.id = execution and e.status = 'queued'
                    and (e.lease_expires_at is null or e.lease_expires_at < now())) then
    return false;
  end if;
  if exists (select from aef_private.runner_pool_dispatch d where d.execution_id = execution) then
    return true;
  end if;
  if aef_private.pool_free_slots() < 1 then
    return false;
  end if;
  insert into aef_private.runner_pool_dispatch (execution_id) values (execution);
  perform pg_notify('aef_pool', '');
  return true;
end
$$;

-- A worker's claim: one dispatched, queued execution (oldest first) and a fresh token for it;
-- no row when there is none. Only a runner login may call it; the worker must be registered
-- and not draining. The execution's task_arn names the worker ('pool:<worker id>') so a stop
-- never tries to stop an ECS task that serves other executions.
create or replace function aef_private.claim_for_pool(worker text)
returns table (execution_id uuid, runner_token text)
language plpgsql volatile security definer set search_path = '' as $$
declare
  picked uuid;
begin
  if not pg_has_role(session_user, 'aef_runner', 'MEMBER') then
    raise insufficient_privilege using message = 'only a runner login may claim for the pool';
  end if;
  if not exists (select from aef_private.runner_pool_workers w
                  where w.worker_id = worker and not w.draining) then
    return;
  end if;
  -- dispatches whose execution moved on (stopped before any worker took it) are dropped
  delete from aef_private.runner_pool_dispatch d
   using public.aef_executions e
   where e.id = d.execution_id and e.status <> 'queued';
  select e.id into picked
    from aef_private.runner_pool_dispatch d
    join public.aef_executions e on e.id = d.execution_id
   where e.status = 'queued' and (e.lease_expires_at is null or e.lease_expires_at < now())
   order by d.dispatched_at
   limit 1
   for update of d, e skip locked;
  if picked is null then
    return;
  end if;
  delete from aef_private.runner_pool_dispatch d where d.execution_id = picked;
  update public.aef_executions set task_arn = 'pool:' || worker where id = picked;
  update aef_private.runner_pool_workers w set active = w.active + 1
   where w.worker_id = worker;
  execution_id := picked;
  runner_token := aef_private.issue_runner_token(picked);
  return next;
end
$$;

-- A worker says it is alive, how many slots it has and uses, and whether it is draining.
-- Workers silent for an hour are forgotten.
create or replace function aef_private.pool_heartbeat(worker text, slots integer, active integer,
                                                      draining boolean) returns void
language plpgsql volatile security definer set search_path = '' as $$
begin
  if not pg_has_role(session_user, 'aef_runner', 'MEMBER') then
    raise insufficient_privilege using message = 'only a runner login may join the pool';
  end if;
  insert into aef_private.runner_pool_workers as w (worker_id, slots, active, draining, seen_at)
  values (worker, greatest(0, slots), greatest(0, active), draining, now())
  on conflict (worker_id) do update
    set slots = excluded.slots, active = excluded.active, draining = excluded.draining,
        seen_at = now();
  delete from aef_private.runner_pool_workers w where w.seen_at < now() - interval '1 hour';
end
$$;

-- A worker leaving (after its drain) frees its row at once.
create or replace function aef_private.pool_leave(worker text) returns void
language plpgsql volatile security definer set search_path = '' as $$
begin
  if not pg_has_role(session_user, 'aef_runner', 'MEMBER') then
    raise insufficient_privilege using message = 'only a runner login may leave the pool';
  end if;
  delete from aef_private.runner_pool_workers w where w.worker_id = worker;
end
$$;

-- What the sweeper publishes for scaling (CloudWatch): slots in use, dispatched and queued
-- executions, and the live workers' slots.
create or replace function aef_private.pool_demand()
returns table (live_workers integer, total_slots integer, active integer, waiting integer)
language sql stable security definer set search_path = '' as $$
  select (select count(*)::integer from aef_private.runner_pool_workers w
           where w.seen_at > now() - make_interval(secs => aef_private.pool_live_seconds())
             and not w.draining),
         (select coalesce(sum(w.slots), 0)::integer from aef_private.runner_pool_workers w
           where w.seen_at > now() - make_interval(secs => aef_private.pool_live_seconds())
             and not w.draining),
         (select count(*)::integer from public.aef_executions e
           where e.status in ('starting', 'running', 'paused', 'waiting_checkpoint',
                              'waiting_recovery', 'cancelling')
             and e.task_arn like 'pool:%'),
         (select count(*)::integer from public.aef_executions e where e.status = 'queued')
$$;

-- The bulk `grant execute on all functions in schema aef_private` of the first migration does
-- not reach functions created later, but a re-run of it would: revoke explicitly, then grant
-- each function to the one role that needs it.
revoke execute on function aef_private.pool_live_seconds() from public, anon, authenticated,
  aef_api, aef_runner, aef_service;
revoke execute on function aef_private.pool_free_slots() from public, anon, authenticated,
  aef_api, aef_runner, aef_service;
revoke execute on function aef_private.dispatch_to_pool(uuid) from public, anon, authenticated,
  aef_api, aef_runner;
revoke execute on function aef_private.claim_for_pool(text) from public, anon, authenticated,
  aef_api, aef_service;
revoke execute on function aef_private.pool_heartbeat(text, integer, integer, boolean)
  from public, anon, authenticated, aef_api, aef_service;
revoke execute on function aef_private.pool_leave(text) from public, anon, authenticated,
  aef_api, aef_service;
revoke execute on function aef_private.pool_demand() from public, anon, authenticated, aef_api,
  aef_runner;
grant execute on function aef_private.dispatch_to_pool(uuid) to aef_service;
grant execute on function aef_private.claim_for_pool(text) to aef_runner;
grant execute on function aef_private.pool_heartbeat(text, integer, integer, boolean)
  to aef_runner;
grant execute on function aef_private.pool_leave(text) to aef_runner;
grant execute on function aef_private.pool_demand() to aef_service;
