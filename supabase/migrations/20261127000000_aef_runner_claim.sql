-- A runner on ECS proves which execution it runs with its own task ARN (read from the task
-- metadata endpoint, which only that task can reach) instead of carrying a token in its
-- container overrides, where ecs:DescribeTasks and CloudTrail would show it.
--
-- aef_private.claim_by_task(execution, task ARN) checks the ARN the launcher stored, then
-- mints a fresh per-execution runner token inside the database, stores its SHA-256 and
-- returns the token to this caller only. From then on the runner works exactly as a runner
-- given its token: `aef.execution_id` + `aef.runner_token` (aef_private.runner_execution_id).
-- A task ARN is claimed once: a second call with the same ARN gets nothing.
-- Idempotent: safe to apply twice.

-- One row per task ARN ever claimed; only the functions below touch it.
create table if not exists aef_private.runner_task_claims (
  task_arn text primary key,
  execution_id uuid not null references public.aef_executions (id) on delete cascade,
  claimed_at timestamptz not null default now()
);
create index if not exists runner_task_claims_execution_idx
  on aef_private.runner_task_claims (execution_id);
revoke all on aef_private.runner_task_claims from public;

-- A fresh runner token for `execution`: 244 random bits (two v4 UUIDs from the server's
-- strong random source), only its SHA-256 kept. Shared by every narrow claim function (the
-- task-ARN claim below; a warm pool worker's claim would be another caller). Invoker's
-- rights on purpose: it writes only when called from such a SECURITY DEFINER function.
create or replace function aef_private.issue_runner_token(execution uuid) returns text
language plpgsql volatile set search_path = '' as $$
declare
  token text := replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
begin
  update public.aef_executions
     set runner_token_hash = sha256(convert_to(token, 'UTF8'))
   where id = execution;
  return token;
end
$$;
revoke execute on function aef_private.issue_runner_token(uuid) from public, anon, authenticated;

-- The ECS runner's claim: the token when `task_arn` is the one stored for this queued,
-- unclaimed execution and was never claimed before; null otherwise (not stored yet: the
-- runner retries briefly; anything else: it gives up).
create or replace function aef_private.claim_by_task(execution uuid, arn text)
returns text
language plpgsql volatile security definer set search_path = '' as $$
declare
  claimed uuid;
begin
  -- only a login that may act as a runner (EXECUTE could be re-granted by a broad grant)
  if not pg_has_role(session_user, 'aef_runner', 'MEMBER') then
    raise insufficient_privilege using message = 'only a runner login may claim by task';
  end if;
  if arn is null or arn = '' then
    return null;
  end if;
  select e.id into claimed from public.aef_executions e
   where e.id = execution and e.task_arn = arn and e.status = 'queued' and e.runner_id is null
   for update;
  if claimed is null then
    return null;
  end if;
  insert into aef_private.runner_task_claims (task_arn, execution_id)
  values (arn, claimed)
  on conflict on constraint runner_task_claims_pkey do nothing;
  if not found then  -- this ARN was claimed before
    return null;
  end if;
  return aef_private.issue_runner_token(claimed);
end
$$;
revoke execute on function aef_private.claim_by_task(uuid, text) from public, anon, authenticated;
grant execute on function aef_private.claim_by_task(uuid, text) to aef_runner;
