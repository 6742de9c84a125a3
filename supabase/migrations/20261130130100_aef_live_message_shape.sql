-- The live message in the seed ticket's exact shape (docs/api-contract.ts): a field the ticket
-- types `name?: T` is left out when it has no value, never null (`execution.currentStep`,
-- `browser.lastAction`, `error.auto_retry_in`, a recovery option's `description`), and a field
-- it types `string` is a string: `browser.screenshot` and `browser.currentUrl` are "" until the
-- browser has them. `error` is there only when there is one; it always has `message` and
-- `recovery_options`. Redefines the function of the first migration; the event trigger and
-- GET /live (aef/store/api.py) both compose messages with it, so they cannot differ.
-- Security invoker, as before: the caller's RLS decides which checkpoints it sees.
create or replace function aef_private.live_message(
  exec public.aef_executions, message_type text, message_seq bigint, extras jsonb
) returns jsonb language sql stable security invoker set search_path = '' as $$
  select jsonb_build_object(
    'type', message_type,
    'timestamp', to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'seq', message_seq,
    'execution', jsonb_strip_nulls(jsonb_build_object(
      'id', exec.id, 'status', exec.status, 'currentStep', exec.current_step_id,
      'progress', exec.progress)),
    'browser', jsonb_build_object(
      'screenshot', coalesce(exec.browser ->> 'screenshot', ''),
      'currentUrl', coalesce(exec.browser ->> 'currentUrl', ''),
      'isReady', coalesce((exec.browser ->> 'isReady')::boolean, false))
      || case when jsonb_typeof(exec.browser -> 'lastAction') = 'string'
              then jsonb_build_object('lastAction', exec.browser -> 'lastAction')
              else '{}'::jsonb end,
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
  || coalesce((
      select jsonb_build_object('error', jsonb_strip_nulls(err) || jsonb_build_object(
        'message', coalesce(err ->> 'message', ''),
        'recovery_options', case when jsonb_typeof(err -> 'recovery_options') = 'array'
                                 then jsonb_strip_nulls(err -> 'recovery_options')
                                 else '[]'::jsonb end))
      from (select coalesce(nullif(extras -> 'error', 'null'::jsonb),
                            nullif(exec.error, 'null'::jsonb)) as err) e
      where jsonb_typeof(err) = 'object'), '{}'::jsonb)
$$;
