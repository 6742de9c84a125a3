-- The names (never the values) of an execution's secrets, so the API can tell whether a run it
-- is about to re-queue has every input its steps need (POST /action: execute, retry, resume).
-- The values stay readable only by the execution's runner.
alter table public.aef_execution_secrets
  add column if not exists names text[] not null default '{}';

update public.aef_execution_secrets
   set names = array(select jsonb_object_keys(secrets) order by 1)
 where names = '{}' and secrets <> '{}'::jsonb;

grant select (execution_id, names) on public.aef_execution_secrets to aef_api;
