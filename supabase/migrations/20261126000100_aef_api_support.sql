-- Support for the API functions: caller liveness and how a stop ended.

-- A token outlives its user; the API refuses a caller whose auth.users row is gone or deleted.
create or replace function aef_private.user_is_active(uid uuid) returns boolean
language sql stable security definer set search_path = '' as $$
  select exists (select 1 from auth.users u where u.id = uid and u.deleted_at is null)
$$;
revoke execute on function aef_private.user_is_active(uuid) from public, authenticated;
grant execute on function aef_private.user_is_active(uuid) to aef_api, aef_service;

-- `DELETE /stop` answers the same body again: remember whether the runner acknowledged.
alter table public.aef_executions add column if not exists stop_cleanup text
  check (stop_cleanup in ('completed', 'forced'));
grant update (stop_cleanup) on public.aef_executions to aef_api;

-- The API writes a few log lines of its own (stop requested, launch failed).
grant insert (execution_id, step_id, level, category, message, details) on public.aef_logs to aef_api;

-- One-statement token bucket: the update records whether this request paid for a token.
alter table public.aef_rate_limits add column if not exists last_allowed boolean not null default true;

-- Non-secret inputs a user passes to POST /execute land in the execution's variables.
grant update (variables) on public.aef_executions to aef_api;
