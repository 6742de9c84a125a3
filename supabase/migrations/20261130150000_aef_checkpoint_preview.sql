-- Checkpoints a person can decide on (issue 15): what the step is about to do (`preview`), the
-- answers valid at that point with their meaning (`choices`), and `pause` as what happens when
-- nobody answers (the execution keeps its browser for a grace period, then releases it and can
-- be resumed from the last completed step).

alter table public.aef_checkpoints add column if not exists preview jsonb;
alter table public.aef_checkpoints add column if not exists choices jsonb not null default '[]'::jsonb;
alter table public.aef_checkpoints drop constraint if exists aef_checkpoints_default_action_check;
alter table public.aef_checkpoints add constraint aef_checkpoints_default_action_check
  check (default_action in ('approve', 'reject', 'skip', 'pause'));

-- The state machine gains two edges (aef/states.py is its twin):
--   waiting_checkpoint -> paused   nobody answered a checkpoint whose timeout action is pause
--   paused -> queued               a user's resume after the runner released the browser
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
        ('paused', 'queued'),
        ('waiting_checkpoint', 'running'), ('waiting_checkpoint', 'failed'),
        ('waiting_checkpoint', 'cancelling'), ('waiting_checkpoint', 'cancelled'),
        ('waiting_checkpoint', 'paused'),
        ('waiting_recovery', 'running'), ('waiting_recovery', 'failed'),
        ('waiting_recovery', 'cancelling'),
        ('cancelling', 'cancelled'),
        -- failed is terminal for a runner; only a user's retry / resume re-queues it
        ('failed', 'queued'))
$$;

-- The live message of 20261130130100 with `preview` and `choices` beside each checkpoint's seed
-- fields (the seed's fields are unchanged). The preview's storage key stays server-side.
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
        'response', c.response,
        'preview', case when jsonb_typeof(c.preview) = 'object'
                        then c.preview - 'screenshotKey' else null end,
        'choices', coalesce(c.choices, '[]'::jsonb)) order by c.created_at), '[]'::jsonb)
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
