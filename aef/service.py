"""Use cases of the API: transform, start, act, respond, stop, read logs / live, sweep.

Each use case runs its writes in one transaction under the caller's identity (RLS makes
another user's rows invisible, hence 404), emits the matching event in that same transaction,
and does slow side effects (launching or stopping a runner) only after commit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import psycopg

from aef import states
from aef.api_models import (
    ActionRequest,
    CheckpointRequest,
    ExecuteRequest,
    TransformRequest,
    wire_json,
)
from aef.auth import Claims
from aef.db import Connection, Database, get_database
from aef.deadline import seconds_left
from aef.errors import Conflict, NotFound, RateLimited, ValidationFailed
from aef.inputs import missing_inputs, stored_inputs, unused_names
from aef.launcher import (
    ATTEMPT_SECONDS,
    POOL_ARN_PREFIX,
    Launcher,
    LaunchFailed,
    get_launcher,
)
from aef.plan import all_ids, parse_plan, with_bodies
from aef.settings import Settings, get_settings
from aef.store import api as api_store
from aef.store import common
from aef.store.api import ExecutionRow

log = logging.getLogger("aef.service")

RECOVERY_LABELS = {
    "retry": "Retry the step",
    "skip": "Skip the step and continue",
    "manual_takeover": "Take over the browser",
    "stop": "Stop the execution",
    "resume": "Resume from the last completed step",
}
LIVE_RECENT_LOGS = 20
LIVE_MAX_EVENTS = 500


def recovery_options(*actions: str) -> list[dict[str, str]]:
    return [{"action": a, "label": RECOVERY_LABELS[a]} for a in actions]


class Caller:
    """The verified caller: user id plus the raw claims PostgREST would set."""

    def __init__(self, user_id: str, claims: Mapping[str, Any]) -> None:
        self.user_id = user_id
        self.claims = dict(claims)
        # the RateLimit headers of the token this request took (aef.http's dependency)
        self.rate_limit_headers: dict[str, str] = {}

    @classmethod
    def from_claims(cls, claims: Claims) -> Caller:
        return cls(str(claims.sub), claims.raw)


def not_found(label: str, identifier: object, *, code: str) -> NotFound:
    """The 404 of a row that is not there (or, under RLS, is someone else's)."""
    return NotFound(f"{label} {identifier} was not found", code=code)


def _require_execution(conn: Connection, execution_id: str, *,
                       for_update: bool = False) -> ExecutionRow:
    execution = api_store.get_execution(conn, execution_id, for_update=for_update)
    if execution is None:
        raise not_found("Execution", execution_id, code="execution_not_found")
    return execution


def log_and_emit(conn: Connection, execution_id: str, level: str, category: str, message: str,
                 *, event: str = "execution_update", step_id: str | None = None,
                 details: dict[str, Any] | None = None,
                 error: dict[str, Any] | None = None) -> None:
    """One log line and the event that carries it to live viewers, in the caller's
    transaction (`error`: the execution's error, sent along with an `error` event)."""
    entry = api_store.insert_log(conn, execution_id, level, category, message, step_id=step_id,
                                 details=details)
    extras: dict[str, Any] = {"logs": [entry]}
    if error is not None:
        extras["error"] = error
    api_store.emit_event(conn, execution_id, event, extras)


# Rate limits ---------------------------------------------------------------------------------
BUCKETS = {"execute", "write", "read"}


def rate_limit(caller: Caller, bucket: str, settings: Settings | None = None, *,
               db: Database | None = None) -> dict[str, str]:
    """Take one token from the caller's bucket in its own committed transaction.

    Separate from the use case on purpose: a request that then fails (409, 422) still paid,
    so a burst of bad requests is limited too. Returns the RateLimit headers.
    """
    s = settings or get_settings()
    capacity, rate = {
        "execute": (s.rate_limit_capacity, s.rate_limit_refill_per_second),
        "write": (s.write_rate_limit_capacity, s.write_rate_limit_refill_per_second),
        "read": (s.read_rate_limit_capacity, s.read_rate_limit_refill_per_second),
    }[bucket]
    with (db or get_database()).as_user(caller.claims) as conn:
        allowed, tokens, wait = api_store.take_token(conn, caller.user_id, bucket, capacity, rate)
    headers = {
        "RateLimit-Limit": str(int(capacity)),
        "RateLimit-Remaining": str(max(0, int(tokens))),
        "RateLimit-Reset": str(max(0, int(-(-wait // 1)))),
    }
    if not allowed:
        retry_after = max(1, int(-(-wait // 1)))
        raise RateLimited(
            f"Too many requests; retry in {retry_after} s", code="rate_limited",
            headers={**headers, "Retry-After": str(retry_after)}, retryAfter=retry_after)
    return headers


# Transform -----------------------------------------------------------------------------------
def transform_sop(caller: Caller, request: TransformRequest, *, settings: Settings | None = None,
                  db: Database | None = None) -> dict[str, Any]:
    from aef.transform import transform

    s = settings or get_settings()
    config = request.config.model_dump(by_alias=True, exclude_none=True) if request.config else None
    with (db or get_database()).as_user(caller.claims) as conn:
        if request.sop_id is not None:
            row = api_store.get_sop(conn, str(request.sop_id))
            if row is None:
                raise not_found("SOP", request.sop_id, code="sop_not_found")
            sop = row["data"]
            if not isinstance(sop, dict):
                raise ValidationFailed("The stored SOP is not a JSON object", code="invalid_sop")
        else:
            sop = request.sop
        # the runner's settings: whether a resolver computes data steps, which URLs it may open
        result = transform(sop, config, resolver=bool(s.llm_resolver), url_policy=s)
        title = _document_title(result.document)
        document_id = api_store.insert_document(
            conn, caller.user_id, str(request.sop_id) if request.sop_id else None, title,
            result.document)
        execution_id = api_store.insert_execution(conn, caller.user_id, document_id)
        log_and_emit(conn, execution_id, "info", "system",
                     f"Workflow '{title}' transformed: {result.estimated_step_count} steps")
    return {
        "aefDocument": result.document,
        "aefDocumentId": document_id,
        "executionId": execution_id,
        "warnings": result.warnings,
        "inputs": [i.model_dump(mode="json", by_alias=True) for i in result.inputs],
        "estimatedStepCount": result.estimated_step_count,
        "estimatedDuration": result.estimated_duration_seconds,
    }


def _document_title(document: Mapping[str, Any]) -> str:
    meta = document.get("meta")
    title = meta.get("title") if isinstance(meta, dict) else None
    return str(title) if title else "Untitled workflow"


def plan_step_ids(document: Mapping[str, Any]) -> set[str]:
    """Every step id of the stored document's plan, at any depth."""
    return set(all_ids(parse_plan(document)))


# Execute -------------------------------------------------------------------------------------
def _request_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(api_store.dumps(body).encode()).hexdigest()


def _new_runner_token() -> tuple[str, bytes]:
    token = secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).digest()


def execute_links(execution_id: str, settings: Settings) -> dict[str, str]:
    base = settings.supabase_url.rstrip("/")
    ws = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return {
        "websocketUrl": f"{ws}/realtime/v1/websocket",
        "channel": f"execution:{execution_id}",
        "pollUrl": f"/api/aef/live/{execution_id}",
    }


def start_execution(caller: Caller, request: ExecuteRequest, idempotency_key: str | None, *,
                    settings: Settings | None = None, launcher: Launcher | None = None,
                    db: Database | None = None) -> dict[str, Any]:
    s = settings or get_settings()
    database = db or get_database()
    body = request.model_dump(mode="json", by_alias=True, exclude_none=True)
    token, token_hash = _new_runner_token()
    with database.as_user(caller.claims) as conn:
        if idempotency_key is not None:
            stored = api_store.claim_idempotency_key(conn, caller.user_id, idempotency_key,
                                                     _request_hash(body))
            if stored is not None:
                return _replay(conn, stored, _request_hash(body))
        api_store.lock_user(conn, caller.user_id)
        document = api_store.get_document(conn, str(request.aef_document_id))
        if document is None:
            raise not_found("AEF document", request.aef_document_id, code="document_not_found")
        _check_step_ids(document["document"], request.step_ids)
        variables, secret_names = set(request.variables or {}), set(request.secrets or {})
        if request.execution_id is not None:
            execution = _require_execution(conn, str(request.execution_id), for_update=True)
            if str(execution.document_id) != str(request.aef_document_id):
                raise Conflict("The execution belongs to another document",
                               code="document_mismatch")
            if execution.status not in (states.IDLE, states.FAILED):
                raise Conflict(f"The execution is {execution.status}; only an idle or failed "
                               "execution can be started", code="invalid_state",
                               currentStatus=execution.status)
            execution_id = str(execution.id)
            held_variables, held_secrets = api_store.input_names(conn, execution_id)
            variables |= held_variables
            secret_names = secret_names if request.secrets else held_secrets
        warnings = check_inputs(document["document"], request.step_ids, variables,
                                secret_names, new=set(request.variables or {}),
                                new_secrets=set(request.secrets or {}))
        if request.execution_id is None:
            execution_id = api_store.insert_execution(conn, caller.user_id,
                                                      str(request.aef_document_id))
        _check_active_cap(conn, caller.user_id, s)
        api_store.queue_execution(conn, execution_id, step_ids=request.step_ids,
                                  runner_token_hash=token_hash, resume_from=None,
                                  variables=request.variables)
        if request.secrets:
            api_store.put_secrets(conn, execution_id, dict(request.secrets))
        log_and_emit(conn, execution_id, "info", "system", "Execution queued")
        response = {"executionId": execution_id, "status": states.QUEUED,
                    **execute_links(execution_id, s), "warnings": warnings}
        if idempotency_key is not None:
            api_store.store_idempotent_response(conn, caller.user_id, idempotency_key, execution_id,
                                                response)
    response["status"] = _launch(caller, execution_id, token,
                                 launcher=launcher or get_launcher(), db=database)
    return response


def _replay(conn: Connection, stored: Mapping[str, Any], request_hash: str) -> dict[str, Any]:
    if stored["request_hash"] != request_hash:
        raise Conflict("This Idempotency-Key was used with a different request body",
                       code="idempotency_key_reused")
    if stored["response"] is None:
        raise Conflict("The first request with this Idempotency-Key failed; use a new key",
                       code="idempotency_key_unusable")
    response = dict(stored["response"])
    execution = api_store.get_execution(conn, str(stored["execution_id"]))
    if execution is not None:
        response["status"] = execution.status
    return response


def _check_step_ids(document: Mapping[str, Any], step_ids: list[str] | None) -> None:
    if not step_ids:
        return
    unknown = sorted(set(step_ids) - plan_step_ids(document))
    if unknown:
        raise ValidationFailed(f"Unknown step ids: {', '.join(unknown[:20])}",
                               code="unknown_step", stepIds=unknown[:20])


def check_inputs(document: Mapping[str, Any], step_ids: list[str] | None, variables: set[str],
                 secrets: set[str], *, new: Collection[str] = (),
                 new_secrets: Collection[str] = ()) -> list[str]:
    """Refuse (422 `missing_inputs`) a run whose selected steps read an input it lacks, naming
    every one; return warnings for the newly given names (`new`, `new_secrets`) the document
    does not use."""
    plan = parse_plan(document)
    inputs = stored_inputs(document)
    selected = with_bodies(plan, step_ids) if step_ids else None
    missing = missing_inputs(plan, inputs, variables | secrets, selected)
    if missing:
        listed = "; ".join(f"{i.kind} {i.name} (needed by {', '.join(i.required_by[:5])})"
                           for i in missing[:20])
        raise ValidationFailed(
            f"The run is missing {len(missing)} input(s): {listed}. Give variables in "
            "`variables` and credentials in `secrets`.", code="missing_inputs",
            missing=[i.model_dump(mode="json", by_alias=True) for i in missing[:50]])
    unused = unused_names(plan, inputs, {*new, *new_secrets})
    return [f"{'secret' if name in new_secrets else 'variable'} {name!r} is not used by this "
            "document" for name in unused]


def _check_active_cap(conn: Connection, user_id: str, s: Settings) -> None:
    active = api_store.count_active_executions(conn, user_id)
    if active >= s.max_active_executions:
        raise Conflict(f"{active} executions are already active (the limit is "
                       f"{s.max_active_executions}); stop one or wait", code="too_many_active",
                       activeExecutions=active, limit=s.max_active_executions)


def _launch(caller: Caller, execution_id: str, token: str, *, launcher: Launcher,
            db: Database) -> str:
    """Start the runner after commit; a failure leaves the execution failed with `retry`.

    The user sees a generic message and a stable code; what AWS said (ARNs, account id) is
    only in the operator's log (the launcher logs it).
    """
    try:
        launch = launcher.launch(execution_id, token)
    except LaunchFailed as exc:
        with db.as_user(caller.claims) as conn:
            execution = api_store.get_execution(conn, execution_id, for_update=True)
            if execution is None or execution.status != states.QUEUED:
                return execution.status if execution else states.FAILED
            message = f"{exc}. Retry in a moment; if it keeps failing, tell the operator."
            error = {"message": message, "code": exc.code,
                     "recovery_options": recovery_options("retry")}
            api_store.set_status(conn, execution_id, states.FAILED, error=error)
            log_and_emit(conn, execution_id, "error", "system", message, event="error",
                         details={"code": exc.code}, error=error)
        return states.FAILED
    if launch.task_arn == POOL_ARN_PREFIX:  # the claiming worker records itself
        return states.QUEUED
    # An ECS runner proves itself with this ARN (runner/identity.py): store it at once.
    with db.as_user(caller.claims) as conn:
        api_store.set_task_arn(conn, execution_id, launch.task_arn)
    return states.QUEUED


# Actions -------------------------------------------------------------------------------------
# Actions that start a run again when no runner is live (a paused execution only resumes).
REQUEUE_ACTIONS = ("execute", "retry", "skip", "resume")


def act(caller: Caller, execution_id: str, request: ActionRequest, *,
        settings: Settings | None = None, launcher: Launcher | None = None,
        db: Database | None = None) -> dict[str, Any]:
    """Steer an execution: a live runner gets the command; an idle, failed (or, to resume,
    paused) execution is queued again and a new runner launched after commit."""
    action: str = request.action
    if action == "stop":
        stop_execution(caller, execution_id, settings=settings, launcher=launcher, db=db)
        return _acted(execution_id, states.CANCELLED, action, "runner")
    if action == "input" and request.input is None:
        raise ValidationFailed("action 'input' needs an `input`", code="validation_failed")
    database = db or get_database()
    with database.as_user(caller.claims) as conn:
        execution = _lock_for_action(conn, caller, execution_id, action)
        _validate_action(conn, execution, request)
        if _runner_listening(execution):
            _deliver_to_runner(conn, execution_id, request)
            _log_user_request(conn, execution_id, request)
            return _acted(execution_id, execution.status, action, "runner")
        token = _requeue(conn, caller, execution, request, settings or get_settings())
        _log_user_request(conn, execution_id, request)
    status = _launch(caller, execution_id, token, launcher=launcher or get_launcher(),
                     db=database)
    return _acted(execution_id, status, action, "launched")


def _acted(execution_id: str, status: str, action: str, delivered: str) -> dict[str, Any]:
    return {"executionId": execution_id, "status": status, "action": action,
            "delivered": delivered}


def _lock_for_action(conn: Connection, caller: Caller, execution_id: str,
                     action: str) -> ExecutionRow:
    """The execution, row-locked; an action that may re-queue first serializes with the
    user's other starts, so the active-execution cap holds."""
    if action in REQUEUE_ACTIONS:
        api_store.lock_user(conn, caller.user_id)
    return _require_execution(conn, execution_id, for_update=True)


def _validate_action(conn: Connection, execution: ExecutionRow,
                     request: ActionRequest) -> None:
    """The action is allowed in this state, and its step (if any) is one of the plan's."""
    if not states.action_allowed(request.action, execution.status):
        raise Conflict(f"Cannot {request.action} an execution that is {execution.status}",
                       code="invalid_state", currentStatus=execution.status)
    if request.step_id is not None:
        document = api_store.get_document(conn, str(execution.document_id))
        _check_step_ids(document["document"] if document else {}, [request.step_id])


def _runner_listening(execution: ExecutionRow) -> bool:
    """A runner will read a command: one is coming (queued) or one holds a live lease."""
    return execution.status == states.QUEUED or (
        execution.status in states.RUNNER_LISTENING_STATES and execution.runner_live)


def _payload(request: ActionRequest) -> dict[str, Any]:
    return request.input.model_dump(exclude_none=True) if request.input else {}


def _deliver_to_runner(conn: Connection, execution_id: str, request: ActionRequest) -> None:
    api_store.insert_command(conn, execution_id, states.ACTION_COMMAND[request.action],
                             request.step_id, _payload(request))


def _requeue(conn: Connection, caller: Caller, execution: ExecutionRow, request: ActionRequest,
             settings: Settings) -> str:
    """Queue the execution again for a new runner; returns that runner's token (launched
    after commit). Refused when the action needs the runner that is not there."""
    action, status, execution_id = request.action, execution.status, str(execution.id)
    may_requeue = (status in (states.IDLE, states.FAILED) and action in REQUEUE_ACTIONS) or (
        status == states.PAUSED and action == "resume")
    if not may_requeue:
        raise Conflict(f"No runner is live for this execution ({status}); "
                       f"'{action}' needs one", code="runner_not_live", currentStatus=status)
    if status != states.PAUSED:  # a paused execution already counts as active
        _check_active_cap(conn, caller.user_id, settings)
    if action == "skip":
        # the new runner reads pending commands when it claims the execution
        api_store.insert_command(conn, execution_id, "skip", request.step_id, _payload(request))
    step_ids = ([request.step_id] if action == "execute" and request.step_id
                else execution.step_ids)
    document = api_store.get_document(conn, str(execution.document_id))
    check_inputs(document["document"] if document else {}, step_ids,
                 *api_store.input_names(conn, execution_id))
    token, token_hash = _new_runner_token()
    api_store.queue_execution(conn, execution_id, step_ids=step_ids,
                              runner_token_hash=token_hash,
                              resume_from=request.step_id if action != "execute" else None)
    return token


def _log_user_request(conn: Connection, execution_id: str, request: ActionRequest) -> None:
    log_and_emit(conn, execution_id, "info", "user",
                 f"User requested {request.action}"
                 + (f" on step {request.step_id}" if request.step_id else ""),
                 step_id=request.step_id)


# Checkpoints ---------------------------------------------------------------------------------
CHECKPOINT_STATUS = {"approve": "approved", "reject": "rejected", "skip": "skipped"}


def next_action(checkpoint_type: str, response: str) -> str:
    if checkpoint_type == "decision":
        return {"approve": "take_yes_branch", "reject": "take_no_branch",
                "skip": "skip_step"}[response]
    return {"approve": "run_step", "reject": "cancel_execution", "skip": "skip_step"}[response]


def respond_checkpoint(caller: Caller, checkpoint_id: str, request: CheckpointRequest, *,
                       db: Database | None = None) -> dict[str, Any]:
    with (db or get_database()).as_user(caller.claims) as conn:
        checkpoint = api_store.get_checkpoint(conn, checkpoint_id, for_update=True)
        if checkpoint is None:
            raise not_found("Checkpoint", checkpoint_id, code="checkpoint_not_found")
        if checkpoint["status"] != "pending":
            raise Conflict("The checkpoint was already answered",
                           code="checkpoint_already_answered",
                           firstDecision=_decision(checkpoint))
        if checkpoint["is_expired"]:
            raise Conflict("The checkpoint expired; its default action applies",
                           code="checkpoint_expired",
                           defaultAction=checkpoint["default_action"])
        status = CHECKPOINT_STATUS[request.response]
        response = {"response": request.response, "data": request.data or {}}
        api_store.answer_checkpoint(conn, checkpoint_id, status, caller.user_id, response)
        log_and_emit(conn, str(checkpoint["execution_id"]), "info", "checkpoint",
                     f"Checkpoint {status} by the user", step_id=checkpoint["step_id"])
    return {"status": "success", "decision": status,
            "nextAction": next_action(checkpoint["type"], request.response)}


def _decision(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    responded = checkpoint.get("responded_at")
    return {"status": checkpoint["status"], "response": checkpoint.get("response"),
            "respondedAt": responded.isoformat() if responded else None}


# Stop ----------------------------------------------------------------------------------------
def stop_execution(caller: Caller, execution_id: str, *, settings: Settings | None = None,
                   launcher: Launcher | None = None,
                   db: Database | None = None) -> dict[str, Any]:
    """Cooperative stop: `cancelling`, a bounded wait for the runner, then force."""
    s = settings or get_settings()
    database = db or get_database()
    with database.as_user(caller.claims) as conn:
        execution = _require_execution(conn, execution_id, for_update=True)
        status = execution.status
        if status == states.CANCELLED:
            return {"status": "stopped", "cleanup": execution.stop_cleanup or "completed"}
        if status in (states.COMPLETED, states.FAILED):
            raise Conflict(f"The execution already ended ({status})", code="execution_finished",
                           currentStatus=status)
        task_arn = execution.task_arn
        runner_live = bool(execution.runner_live)
        unclaimed = status == states.IDLE or (
            status == states.QUEUED and execution.runner_id is None)
        if unclaimed:
            # no runner holds it yet: nothing to clean up; a late runner finds it cancelled
            api_store.set_status(conn, execution_id, states.CANCELLED)
            api_store.set_stop_cleanup(conn, execution_id, "completed")
            log_and_emit(conn, execution_id, "info", "user", "Execution stopped",
                         event="execution_complete")
        elif status != states.CANCELLING:
            api_store.set_status(conn, execution_id, states.CANCELLING)
            log_and_emit(conn, execution_id, "info", "user", "Stop requested")
    if unclaimed:
        if task_arn:
            (launcher or get_launcher()).stop(task_arn, "AEF stop before the runner started")
        return {"status": "stopped", "cleanup": "completed"}
    # a runner whose lease lapsed will not answer: force at once
    if runner_live and _wait_for_runner_stop(caller, execution_id, s, database):
        return {"status": "stopped",
                "cleanup": _acknowledged_cleanup(caller, execution_id, database)}
    if task_arn:
        (launcher or get_launcher()).stop(task_arn,
                                          "AEF stop: the runner did not acknowledge in time")
    return {"status": "stopped", "cleanup": _force_cancel(execution_id, database)}


STOP_POLL_FIRST_SECONDS = 0.1
STOP_POLL_MAX_SECONDS = 1.0
FORCE_RESERVE_SECONDS = 2.0  # after the wait: StopTask (ATTEMPT_SECONDS) + the forced write


def _wait_for_runner_stop(caller: Caller, execution_id: str, s: Settings, db: Database) -> bool:
    """Wait (bounded) for the runner to write `cancelled`; True if it did.

    Plain reads with a growing pause (0.1 s, doubling to 1 s): about 8 short reads over
    5 s, no row lock held, and the wait ends early enough for the forced path to fit in
    the Lambda's remaining time.
    """
    after_wait = ATTEMPT_SECONDS + FORCE_RESERVE_SECONDS
    budget = min(s.stop_ack_timeout_seconds,
                 seconds_left(s.stop_ack_timeout_seconds + after_wait) - after_wait)
    deadline = time.monotonic() + budget
    pause = STOP_POLL_FIRST_SECONDS
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, STOP_POLL_MAX_SECONDS)
        with db.as_user(caller.claims) as conn:
            if api_store.get_status(conn, execution_id) == states.CANCELLED:
                return True


def _acknowledged_cleanup(caller: Caller, execution_id: str, db: Database) -> str:
    """The runner wrote `cancelled`: record (once) that the stop completed cleanly."""
    with db.as_user(caller.claims) as conn:
        execution = api_store.get_execution(conn, execution_id, for_update=True)
        if execution is None:
            return "completed"
        if execution.stop_cleanup is None:
            api_store.set_stop_cleanup(conn, execution_id, "completed")
        return str(execution.stop_cleanup or "completed")


def _force_cancel(execution_id: str, db: Database) -> str:
    with db.as_service() as conn:
        execution = _require_execution(conn, execution_id, for_update=True)
        if execution.status == states.CANCELLED:
            return str(execution.stop_cleanup or "completed")
        common.cancel_open_steps(conn, execution_id)
        api_store.set_status(conn, execution_id, states.CANCELLED)
        api_store.set_stop_cleanup(conn, execution_id, "forced")
        log_and_emit(conn, execution_id, "warn", "system",
                     "The runner did not acknowledge the stop; it was stopped",
                     event="execution_complete")
    return "forced"


# Reads ---------------------------------------------------------------------------------------
def _pack(value: dict[str, Any]) -> str:
    """An opaque cursor: URL-safe base64 of a small JSON object."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _unpack(cursor: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValidationFailed("`after` is not a cursor this API issued", code="invalid_cursor")
    return value


def encode_cursor(log_id: int) -> str:
    return _pack({"after": log_id})


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    if cursor.isdigit():
        return int(cursor)
    after = _unpack(cursor).get("after")
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ValidationFailed("`after` is not a cursor this API issued", code="invalid_cursor")
    return after


def encode_keyset(kind: str, row: Mapping[str, Any]) -> str:
    """The cursor after `row` in a newest-first list of `kind`."""
    return _pack({"k": kind, "t": row["created_at"].isoformat(), "i": str(row["id"])})


def decode_keyset(kind: str, cursor: str | None) -> tuple[datetime, str] | None:
    """(created_at, id) of a cursor this list issued; a cursor of another list is refused."""
    if not cursor:
        return None
    value = _unpack(cursor)
    try:
        if value.get("k") != kind:
            raise ValueError(kind)
        created_at = datetime.fromisoformat(str(value["t"]))
        if created_at.tzinfo is None:
            raise ValueError("naive")
        return created_at, str(uuid.UUID(str(value["i"])))
    except (KeyError, ValueError) as exc:
        raise ValidationFailed("`after` is not a cursor this API issued",
                               code="invalid_cursor") from exc


def parse_statuses(text: str | None) -> list[str]:
    """`status=running,waiting_checkpoint`: each one an execution status."""
    wanted = [part.strip() for part in (text or "").split(",") if part.strip()]
    unknown = [name for name in wanted if name not in states.EXECUTION_TRANSITIONS]
    if unknown:
        message = f"not an execution status: {', '.join(unknown[:5])}"
        raise ValidationFailed(f"query.status: {message}", errors=[
            {"field": "query.status", "message": message}])
    return wanted


def wire_time(value: datetime) -> str:
    """A timestamp as the response models write it (pydantic: ISO 8601, UTC as `Z`), for the
    read routes that send their body already serialized."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def list_documents(caller: Caller, *, after: str | None, limit: int,
                   db: Database | None = None) -> dict[str, Any]:
    before = decode_keyset("documents", after)
    with (db or get_database()).as_user(caller.claims) as conn:
        rows = api_store.page_documents(conn, caller.user_id, before=before, limit=limit + 1)
    page = rows[:limit]
    return {
        "documents": [{"id": str(r["id"]), "title": r["title"],
                       "sopId": str(r["sop_id"]) if r["sop_id"] else None,
                       "createdAt": wire_time(r["created_at"])} for r in page],
        "nextCursor": encode_keyset("documents", page[-1]) if len(rows) > limit else None,
    }


def read_document(caller: Caller, document_id: str, *,
                  db: Database | None = None) -> dict[str, Any]:
    """One of the caller's documents; someone else's is as absent as a missing one (RLS)."""
    with (db or get_database()).as_user(caller.claims) as conn:
        row = conn.execute(
            "select id, title, sop_id, created_at, document from aef_documents "
            "where id = %s and user_id = %s", (document_id, caller.user_id)).fetchone()
    if row is None:
        raise not_found("AEF document", document_id, code="document_not_found")
    return {"id": str(row["id"]), "title": row["title"],
            "sopId": str(row["sop_id"]) if row["sop_id"] else None,
            "createdAt": row["created_at"].isoformat(), "aefDocument": row["document"]}


def list_executions(caller: Caller, *, after: str | None, limit: int, status: str | None,
                    document_id: str | None, db: Database | None = None) -> dict[str, Any]:
    before = decode_keyset("executions", after)
    statuses = parse_statuses(status)
    with (db or get_database()).as_user(caller.claims) as conn:
        rows = api_store.page_executions(conn, caller.user_id, before=before, limit=limit + 1,
                                         statuses=statuses, document_id=document_id)
    page = rows[:limit]

    def when(value: datetime | None) -> str | None:
        return wire_time(value) if value else None

    return {
        "executions": [{
            "id": str(r["id"]), "documentId": str(r["document_id"]),
            "documentTitle": r["document_title"], "status": r["status"],
            "progress": r["progress"], "currentStep": r["current_step_id"],
            "createdAt": when(r["created_at"]), "startedAt": when(r["started_at"]),
            "finishedAt": when(r["finished_at"]),
            "duration": round(r["duration"], 3) if r["duration"] is not None else None,
        } for r in page],
        "nextCursor": encode_keyset("executions", page[-1]) if len(rows) > limit else None,
    }


def read_logs(caller: Caller, execution_id: str, *, after: str | None, limit: int,
              level: str | None, step_id: str | None,
              db: Database | None = None) -> dict[str, Any]:
    after_id = decode_cursor(after)
    with (db or get_database()).as_user(caller.claims) as conn:
        _require_execution(conn, execution_id)
        rows = api_store.page_logs(conn, execution_id, after=after_id, limit=limit, level=level,
                                   step_id=step_id)
    logs = [{
        "id": r["id"], "timestamp": wire_time(r["created_at"]), "level": r["level"],
        "category": r["category"], "message": r["message"], "stepId": r["step_id"],
        "details": r["details"],
    } for r in rows]
    next_cursor = encode_cursor(rows[-1]["id"]) if len(rows) == limit else None
    return {"logs": logs, "nextCursor": next_cursor}


def live_message_type(status: str) -> str:
    if status == states.WAITING_CHECKPOINT:
        return "checkpoint_required"
    if status in (states.COMPLETED, states.CANCELLED):
        return "execution_complete"
    if status in (states.FAILED, states.WAITING_RECOVERY):
        return "error"
    return "execution_update"


LIVE_MESSAGE_TYPES = {str(status): live_message_type(status)
                      for status in states.EXECUTION_TRANSITIONS}


def live_etag(execution_id: str, last_seq: int, after: int) -> str:
    return f'W/"{execution_id}-{last_seq}-{after}"'


def read_live(caller: Caller, execution_id: str, *, after: int, if_none_match: str | None,
              db: Database | None = None) -> tuple[bytes | None, str]:
    """The live snapshot plus the events after `after`, as the response's JSON body
    (`LiveResponse`); (None, etag) when unchanged. One statement (api_store.live_read) after
    the caller's identity; the events (up to 500) come as the JSON text of one array and are
    spliced in as they are: parsing and re-serializing them was most of the route's own
    time."""
    with (db or get_database()).as_user(caller.claims) as conn:
        row = api_store.live_read(conn, execution_id, after=after,
                                  unchanged=_unchanged_seqs(if_none_match, execution_id, after),
                                  message_types=LIVE_MESSAGE_TYPES,
                                  recent_logs=LIVE_RECENT_LOGS, max_events=LIVE_MAX_EVENTS)
    if row is None:
        raise not_found("Execution", execution_id, code="execution_not_found")
    etag = live_etag(execution_id, row["last_seq"], after)
    if not row["fresh"]:
        return None, etag
    message = dict(row["message"])
    key = (row["browser"] or {}).get("screenshotKey")
    signed = _sign_screenshot(key) if key else None
    if signed:  # else the URL signed at upload stays (maybe expired, never null)
        message["browser"] = {**message["browser"], "screenshot": signed}
    previews = row["previews"]
    if previews and message.get("checkpoints"):
        # the checkpoint's outlined screenshot, signed afresh the same way
        message["checkpoints"] = [_signed_preview(c, previews.get(str(c.get("id"))))
                                  for c in message["checkpoints"]]
    body = (f'{{"message":{wire_json(message)},"events":{row["events"]},'
            f'"lastSeq":{int(row["last_seq"])}}}')
    return body.encode(), etag


def _unchanged_seqs(if_none_match: str | None, execution_id: str, after: int) -> list[int]:
    """The last_seq values named by the client's ETags for this execution and `after`
    (`live_etag`'s shape); any other tag matches nothing."""
    if not if_none_match:
        return []
    head, tail = f'W/"{execution_id}-', f'-{after}"'
    seqs = []
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag.startswith(head) and tag.endswith(tail):
            middle = tag[len(head):len(tag) - len(tail)]
            if middle.isdigit() and len(middle) <= 18:
                seqs.append(int(middle))
    return seqs


def _signed_preview(checkpoint: dict[str, Any], key: str | None) -> dict[str, Any]:
    signed = _sign_screenshot(key) if key else None
    preview = checkpoint.get("preview")
    if not signed or not isinstance(preview, dict):
        return checkpoint
    return {**checkpoint, "preview": {**preview, "screenshot": signed}}


def _sign_screenshot(key: str) -> str | None:
    """A fresh short-lived URL: the one in the stored message may have expired."""
    try:
        from aef.screenshots import get_screenshot_store

        return get_screenshot_store().sign(key)
    except Exception:  # storage misconfigured: the snapshot is still useful without it
        log.warning("could not sign screenshot URL")
        return None


# Sweeper -------------------------------------------------------------------------------------
def sweep(*, db: Database | None = None, launcher: Launcher | None = None,
          settings: Settings | None = None, batch: int = 100,
          queued_timeout_seconds: int = 300) -> dict[str, int]:
    """Fail executions whose runner died, expire checkpoints, forget old idempotency keys,
    and stop the tasks of lost runners (a hung task would otherwise run, and bill, until its
    own time limit)."""
    database = db or get_database()
    lost = stale = expired = resumed = 0
    orphans: list[tuple[str, str]] = []  # (execution id, task ARN) to stop after commit
    with database.as_service() as conn:
        for row in api_store.expired_leases(conn, batch):
            _mark_runner_lost(conn, str(row["id"]), row["status"])
            lost += 1
            pooled = str(row["task_arn"] or "").startswith(POOL_ARN_PREFIX)
            if pooled and row["status"] != states.CANCELLING:
                resumed += _resume_on_pool(conn, str(row["id"]), row["step_ids"])
            elif row["task_arn"]:
                orphans.append((str(row["id"]), str(row["task_arn"])))
        for row in api_store.stale_queued(conn, queued_timeout_seconds, batch):
            message = "No runner picked up the execution"
            error = {"message": message, "recovery_options": recovery_options("retry", "stop")}
            api_store.set_status(conn, str(row["id"]), states.FAILED, error=error)
            log_and_emit(conn, str(row["id"]), "error", "system", message, event="error",
                         error=error)
            stale += 1
            if row["task_arn"]:
                orphans.append((str(row["id"]), str(row["task_arn"])))
        for row in api_store.expired_checkpoints(conn, batch):
            api_store.answer_checkpoint(conn, str(row["id"]), "expired", None,
                                        {"defaultAction": row["default_action"], "by": "timeout"})
            log_and_emit(conn, str(row["execution_id"]), "warn", "checkpoint",
                         f"Checkpoint expired; default action '{row['default_action']}' applies")
            expired += 1
        purged = api_store.purge_idempotency_keys(conn, 24)
        demand = api_store.pool_demand(conn)
    stopped = _stop_tasks(launcher or get_launcher(), orphans)
    _publish_pool_demand(demand, settings)
    return {"runnersLost": lost, "staleQueued": stale, "checkpointsExpired": expired,
            "idempotencyKeysPurged": purged, "tasksStopped": stopped,
            "resumedOnPool": resumed}


def _resume_on_pool(conn: Connection, execution_id: str, step_ids: Any) -> int:
    """A lost pool worker's execution (crash, drain hand-back) resumes from its last completed
    step on a live worker with a free slot: 1. None free: it stays failed with `resume`."""
    with conn.transaction():  # a savepoint: undone unless the pool takes it
        api_store.queue_execution(conn, execution_id, step_ids=step_ids,
                                  runner_token_hash=_new_runner_token()[1], resume_from=None)
        if not api_store.dispatch_to_pool(conn, execution_id):
            raise psycopg.Rollback()
        log_and_emit(conn, execution_id, "info", "system", "Resuming on another pool worker")
        return 1
    return 0


def _publish_pool_demand(demand: Mapping[str, int], settings: Settings | None = None) -> None:
    """`PoolUtilization` (% of live slots needed by active + queued executions) for the ECS
    service's target tracking (template.yaml); nothing to do without a namespace (local)."""
    s = settings or get_settings()
    if not s.pool_metric_namespace:
        return
    needed = demand["active"] + demand["waiting"]
    utilization = min(400.0, 100.0 * needed / demand["total_slots"]) if demand["total_slots"] \
        else (400.0 if needed else 0.0)
    try:
        import boto3

        boto3.client("cloudwatch", region_name=s.aws_region,
                     endpoint_url=s.aws_endpoint_url).put_metric_data(
            Namespace=s.pool_metric_namespace,
            MetricData=[{"MetricName": "PoolUtilization", "Value": utilization,
                         "Unit": "Percent"},
                        {"MetricName": "PoolSlotsNeeded", "Value": float(needed),
                         "Unit": "Count"}])
    except Exception as exc:  # scaling waits for the next sweep; the sweep itself succeeded
        log.warning("pool metric not published", extra={"error": type(exc).__name__})


def _stop_tasks(launcher: Launcher, orphans: list[tuple[str, str]]) -> int:
    """StopTask each orphan while the invocation has time for another call."""
    stopped = 0
    for index, (execution_id, task_arn) in enumerate(orphans):
        if seconds_left(float("inf")) < ATTEMPT_SECONDS + 1.0:
            log.warning("sweeper out of time: tasks left running",
                        extra={"tasksLeft": len(orphans) - index})
            break
        if launcher.stop(task_arn, "AEF sweeper: the runner stopped responding"):
            stopped += 1
            log.info("lost runner's task stopped", extra={"executionId": execution_id})
    return stopped


def _mark_runner_lost(conn: Connection, execution_id: str, status: str) -> None:
    # the runner is gone: its verdict on a step it was running no longer stands
    common.fail_open_steps(conn, execution_id, "The runner stopped responding",
                           keep_error=False)
    if status == states.CANCELLING:
        api_store.set_status(conn, execution_id, states.CANCELLED)
        api_store.set_stop_cleanup(conn, execution_id, "forced")
        log_and_emit(conn, execution_id, "warn", "system",
                     "The runner ended before acknowledging the stop", event="execution_complete")
        return
    last = api_store.last_completed_step(conn, execution_id)
    message = ("The runner stopped responding"
               + (f"; resume continues after step {last}" if last else ""))
    error = {"message": message, "recovery_options": recovery_options("resume", "retry", "stop")}
    api_store.set_status(conn, execution_id, states.FAILED, error=error)
    log_and_emit(conn, execution_id, "error", "system", message, event="error", error=error)
