"""`aef`: the local stack and the demo, on one machine, with no Docker and no cloud account.

    aef dev                      run the stack (functions, Realtime, auth, S3, demo site)
    aef token [--user EMAIL]     print an access token for a dev user (ES256, 1 h)
    aef demo [--yes]             the demo workflow end to end, watched live
    aef watch EXECUTION_ID       follow any execution live (read-only)
    aef smoke --api URL --token JWT   a deployment end to end: transform, execute, live,
                                      logs, stop (local/smoke.py)

Every command but `dev` is a client of a running stack: it reads `.aef/stack.json` (written
by `aef dev` once it is ready) to find the URLs, and talks HTTP and Realtime like a frontend.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import psycopg

from local.dev import (
    DEFAULT_DATABASE,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_STATE_DIR,
    ROOT,
    DevOptions,
    DevStack,
    chromium_path,
)
from local.keys import DEFAULT_TTL_SECONDS, BadKeyFile, load_or_create, mint_user_token
from local.postgres import free_port, lookup_user
from local.state import DEV_USERS, StackError, StackInfo, StateDir, pid_alive

if TYPE_CHECKING:
    from local.watch import ApiClient, LiveState

DEMO_USER = DEV_USERS[0].email
STACK_START_TIMEOUT_SECONDS = 120.0
DEMO_TIMEOUT_SECONDS = 900.0


ERROR_PREFIX = "aef: "
MAX_TOKEN_TTL_SECONDS = 7 * 24 * 3600  # the most Supabase's auth.jwt_expiry allows: a week
STOP_SECONDS = 30.0  # a stack we started gets this long to stop before SIGKILL


class CliError(Exception):
    """Something the person must fix; printed without a traceback."""


# --------------------------------------------------------------------------------------------
# Finding (or starting) the stack
# --------------------------------------------------------------------------------------------


def stack_healthy(info: StackInfo, timeout: float = 2.0) -> bool:
    try:
        response = httpx.get(f"{info.supabase_url}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def running_stack(state: StateDir) -> StackInfo | None:
    info = StackInfo.load(state.stack_file)
    if info is None or not pid_alive(info.pid) or not stack_healthy(info):
        return None
    return info


def require_stack(state: StateDir) -> StackInfo:
    info = running_stack(state)
    if info is None:
        raise CliError(f"No running stack found ({state.stack_file}); start one with `aef dev`")
    return info


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (the stack stops what it started), then SIGKILL if it hangs."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[list[int]]:
    """Hold Ctrl-C back while the block runs; the list it yields says whether one came.

    A Ctrl-C inside `Popen` (the child already started, its pid not yet ours) would leave the
    child running with nobody to stop it. Only the main thread can set signal handlers.
    """
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class StartedStack:
    info: StackInfo
    process: subprocess.Popen[bytes] | None  # None: someone else's stack, left running

    def stop(self) -> None:
        stop_process(self.process)


def start_stack(state: StateDir, *, port: int, database: str, embedded_postgres: bool,
                say: Any) -> StartedStack:
    """Reuse the running stack, or start `aef dev` in the background until we are done.

    The stack runs in a session of its own: Ctrl-C in the terminal reaches only us, so we can
    still stop the execution through the stack before we stop the stack itself.
    """
    info = running_stack(state)
    if info is not None:
        say(f"Using the running stack at {info.supabase_url} (pid {info.pid})")
        return StartedStack(info, None)
    state.ensure()
    chosen = free_port(preferred=port)
    log_file = state.logs / "dev.log"
    say(f"Starting the local stack on port {chosen} (log: {log_file})")
    command = [sys.executable, "-m", "local.cli", "--state-dir", str(state.root), "dev",
               "--port", str(chosen), "--database", database]
    if embedded_postgres:
        command.append("--embedded-postgres")
    process: subprocess.Popen[bytes] | None = None
    try:
        with log_file.open("ab") as log, ctrl_c_held() as held:
            start = log.tell()
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, cwd=ROOT,
                                       start_new_session=True)
        if held:
            raise KeyboardInterrupt
        deadline = time.monotonic() + STACK_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise CliError(f"The local stack did not start: {why_it_ended(log_file, start)}"
                               f" (log: {log_file})")
            info = StackInfo.load(state.stack_file)
            if info is not None and info.pid == process.pid and stack_healthy(info):
                return StartedStack(info, process)
            time.sleep(0.25)
        raise CliError(f"The local stack was not ready after "
                       f"{STACK_START_TIMEOUT_SECONDS:.0f} s; see {log_file}")
    except BaseException:
        stop_process(process)
        raise


def why_it_ended(log_file: Path, start: int) -> str:
    """The one-line reason `aef dev` printed (`aef: ...`) in its log since `start`."""
    try:
        with log_file.open("rb") as log:
            log.seek(start)
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    reasons = [line[len(ERROR_PREFIX):] for line in lines if line.startswith(ERROR_PREFIX)]
    return reasons[-1] if reasons else "it exited at once"


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------


def user_id_for(email: str, info: StackInfo | None) -> str:
    """The auth.users id of `email`: from the stack's database, else a dev user's fixed id."""
    if info is not None:
        if email in info.users:
            return info.users[email]
        try:
            found = lookup_user(info.database_url, email)
        except psycopg.Error:
            found = None
        if found:
            return found
    for user in DEV_USERS:
        if user.email.lower() == email.lower():
            return user.default_id
    known = ", ".join(u.email for u in DEV_USERS)
    raise CliError(f"Unknown user {email}; the dev users are {known}")


def token_for(state: StateDir, email: str, info: StackInfo | None,
              ttl: int = DEFAULT_TTL_SECONDS) -> str:
    from aef.settings import get_settings

    supabase_url = info.supabase_url if info else get_settings().supabase_url
    key = load_or_create(state.keys)
    return mint_user_token(key, user_id=user_id_for(email, info), email=email,
                           supabase_url=supabase_url, ttl_seconds=ttl)


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def cmd_dev(args: argparse.Namespace) -> int:
    options = DevOptions(host=args.host, port=args.port, database_url=args.database_url,
                         database_url_name="--database-url", database_name=args.database,
                         reset_db=args.reset_db, embedded_postgres=args.embedded_postgres,
                         state_dir=args.state_dir)
    if options.database_url is None:
        from aef.settings import Settings

        settings = Settings()
        if "database_url" in settings.model_fields_set:  # DATABASE_URL was given
            options.database_url = settings.database_url
            options.database_url_name = "DATABASE_URL"
    DevStack(options).serve()
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir)
    info = running_stack(state)
    print(token_for(state, args.user, info, args.ttl))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from local.watch import ApiClient, Follower, ReadOnly, RealtimeConfig, make_view

    state = StateDir(args.state_dir)
    info = require_stack(state)
    token = token_for(state, args.user, info)
    view = make_view(f"AEF execution {args.execution_id}", plain=args.plain)

    async def follow() -> str:
        api = ApiClient(info.api_url, token)
        try:
            realtime = None if args.poll else RealtimeConfig(info.supabase_url, info.anon_key,
                                                              token)
            follower = Follower(api, args.execution_id, realtime=realtime, view=view,
                                decider=ReadOnly())
            final = await follower.run()
            return final.status
        finally:
            await api.close()
            view.close()

    status = asyncio.run(follow())
    print(f"Execution {args.execution_id}: {status}")
    return 0 if status == "completed" else 1


def cmd_smoke(args: argparse.Namespace) -> int:
    import os

    from local.smoke import run_smoke

    token = args.token or os.environ.get("AEF_SMOKE_TOKEN")
    if not token:
        raise CliError("pass --token JWT or set AEF_SMOKE_TOKEN (a user's access token)")
    return asyncio.run(run_smoke(args.api, token, page=args.page,
                               wait_seconds=args.timeout))


def preflight() -> list[str]:
    """What the demo needs on this machine; returns the problems found."""
    import importlib.util

    problems = []
    if chromium_path() is None:
        problems.append("Chromium is not installed (scripts/bootstrap.sh installs it)")
    if importlib.util.find_spec("runner.__main__") is None:
        problems.append("the runner package (python -m runner) is missing")
    if not (ROOT / "template.yaml").exists():
        problems.append("template.yaml is missing")
    from local.demo import WORKFLOW_PATH

    if not WORKFLOW_PATH.exists():
        problems.append(f"the demo workflow {WORKFLOW_PATH} is missing")
    return problems


def read_workflow(path: Path) -> dict[str, Any]:
    """The SOP or workflow document at `path`, or a CliError saying what is wrong with it."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"No workflow file at {path}") from None
    except IsADirectoryError:
        raise CliError(f"{path} is a folder; --workflow takes a JSON file") from None
    except OSError as exc:
        raise CliError(f"Cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not a text file; --workflow takes a JSON file") from None
    except ValueError as exc:
        raise CliError(f"{path} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CliError(f"{path} holds a JSON {type(data).__name__}, not an SOP or workflow "
                       "object")
    return data


def cmd_demo(args: argparse.Namespace) -> int:
    from local.demo import WORKFLOW_PATH

    state = StateDir(args.state_dir)
    interactive = not args.yes
    if interactive and not sys.stdin.isatty():
        raise CliError("Checkpoints are asked in the terminal, and stdin is not one; "
                       "run in a terminal or pass --yes to approve everything")
    workflow_path = args.workflow or WORKFLOW_PATH
    workflow = read_workflow(workflow_path)
    problems = preflight()
    if problems:
        raise CliError("The demo cannot run: " + "; ".join(problems))
    stack = start_stack(state, port=args.port, database=args.database,
                        embedded_postgres=args.embedded_postgres, say=print)
    try:
        code = asyncio.run(run_demo(state, stack.info, args, workflow, workflow_path))
        if stack.process is not None and interactive:
            keep_up_until_enter()
        return code
    finally:
        if stack.process is not None:
            print("Stopping the local stack")
        stack.stop()


def keep_up_until_enter() -> None:
    """The summary's links point into the stack: keep it until the person is done."""
    print("\nThe local stack stays up so these links work; press Enter (or Ctrl-C) to stop it.")
    with contextlib.suppress(KeyboardInterrupt, EOFError):
        sys.stdin.readline()


async def run_demo(state: StateDir, info: StackInfo, args: argparse.Namespace,
                   workflow: dict[str, Any], workflow_path: Path) -> int:
    from local.demo import DEMO_EMAIL, DEMO_PASSWORD
    from local.watch import (
        ApiClient,
        ApiError,
        AskPerson,
        AutoApprove,
        Decider,
        Follower,
        RealtimeConfig,
        make_view,
    )

    token = token_for(state, args.user, info)
    async with httpx.AsyncClient(base_url=info.supabase_url, timeout=10) as site:
        (await site.post("/demo/reset")).raise_for_status()
    api = ApiClient(info.api_url, token)
    try:
        transformed = await api.transform(workflow)
        document_id = str(transformed["aefDocumentId"])
        execution_id = str(transformed["executionId"])
        title = (workflow.get("meta") or {}).get("title", workflow_path.name)
        print(f"Transformed '{title}': document {document_id}, "
              f"{transformed.get('estimatedStepCount')} steps, "
              f"about {transformed.get('estimatedDuration')} s")
        for warning in transformed.get("warnings") or []:
            print(f"  warning: {warning}")
        # Credentials are secrets (masked in every log and event); the demo site's address
        # is a plain variable, so URLs in the logs stay readable.
        secrets = {"demo_email": DEMO_EMAIL, "demo_password": DEMO_PASSWORD}
        variables = {"base_url": info.supabase_url}
        started = await api.execute(document_id, execution_id=execution_id, secrets=secrets,
                                    variables=variables,
                                    idempotency_key=f"aef-demo-{uuid.uuid4()}")
        print(f"Execution {execution_id} {started['status']}; live on channel "
              f"{started['channel']}")
        print(f"Console     {info.console_url}#/executions/{execution_id}  (sign in as "
              f"{args.user})")
        view = make_view(f"AEF demo: {title}", plain=args.plain)
        decider: Decider = AutoApprove() if args.yes else AskPerson(view)
        follower = Follower(api, execution_id,
                            realtime=RealtimeConfig(info.supabase_url, info.anon_key, token),
                            view=view, decider=decider)
        try:
            final = await follower.run(give_up_after=args.timeout)
        except (TimeoutError, asyncio.CancelledError, EOFError):
            view.note(f"Stopping execution {execution_id}")
            with contextlib.suppress(ApiError, httpx.HTTPError):
                await asyncio.shield(api.stop(execution_id))
            raise
        finally:
            view.close()
        await print_summary(state, info, api, token, final)
        return 0 if final.status == "completed" else 1
    finally:
        await api.close()


async def print_summary(state: StateDir, info: StackInfo, api: ApiClient, token: str,
                        final: LiveState) -> None:
    execution_id = final.execution_id
    logs = await api.all_logs(execution_id)
    counts = execution_counts(info, token, execution_id)
    shots = download_screenshots(info, execution_id, state.screenshots / execution_id)
    async with httpx.AsyncClient(base_url=info.supabase_url, timeout=10) as site:
        crm = (await site.get("/demo/state")).json()
    print()
    print(f"Execution   {execution_id}: {final.status} in {final.elapsed:.0f} s")
    print("Steps       " + (", ".join(f"{n} {s}" for s, n in sorted(counts["steps"].items()))
                           or "none"))
    print("Checkpoints " + (", ".join(f"{n} {s}" for s, n in
                                      sorted(counts["checkpoints"].items())) or "none"))
    if final.actions:
        print(f"Recovery    {', '.join(final.actions)}")
    errors = sum(1 for entry in logs if entry.get("level") == "error")
    print(f"Logs        {len(logs)} entries ({errors} errors): "
          f"GET {info.api_url}/api/aef/logs/{execution_id}")
    summary = crm.get("summary", {})
    print(f"Console     {info.console_url}  (watch and replay it in the browser)")
    print(f"Demo CRM    {summary.get('added', 0)} added, {summary.get('updated', 0)} updated, "
          f"{summary.get('processed', 0)} emails processed: {info.supabase_url}/crm/")
    if shots:
        print(f"Screenshots {len(shots)} in {state.screenshots / execution_id}")
    else:
        print("Screenshots none were uploaded")


def execution_counts(info: StackInfo, token: str, execution_id: str) -> dict[str, dict[str, int]]:
    """Step and checkpoint counts by status, read as the user (RLS), as supabase-js reads."""
    import jwt

    from aef.db import Database

    claims = jwt.decode(token, options={"verify_signature": False})
    database = Database(info.database_url, min_size=0, max_size=1)
    try:
        with database.as_authenticated(claims) as conn:
            steps = conn.execute(
                "select status, count(*) as n from public.aef_execution_steps "
                "where execution_id = %s group by status", (execution_id,)).fetchall()
            checkpoints = conn.execute(
                "select status, count(*) as n from public.aef_checkpoints "
                "where execution_id = %s group by status", (execution_id,)).fetchall()
    finally:
        database.close()
    return {"steps": {r["status"]: int(r["n"]) for r in steps},
            "checkpoints": {r["status"]: int(r["n"]) for r in checkpoints}}


def download_screenshots(info: StackInfo, execution_id: str, dest: Path) -> list[Path]:
    """Copy the execution's screenshots out of the stack's S3 into plain JPEG files."""
    from local.s3 import client as s3_client

    client = s3_client(info.s3_endpoint_url)
    prefix = f"{info.screenshot_prefix}{execution_id}/"
    saved: list[Path] = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=info.screenshot_bucket, Prefix=prefix):
        for item in page.get("Contents") or []:
            dest.mkdir(parents=True, exist_ok=True)
            target = dest / Path(item["Key"]).name
            client.download_file(info.screenshot_bucket, item["Key"], str(target))
            saved.append(target)
    return saved


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, reporting a usage mistake in one line (`aef token: --ttl must be ...`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _number(kind: type[int] | type[float], low: float, high: float | None, what: str) -> Any:
    """An argparse type: a number of `kind` in [low, high], or a one-line complaint."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    return parse


PORT = _number(int, 0, 65535, "a TCP port (0-65535; 0: any free port)")
TTL = _number(int, 1, MAX_TOKEN_TTL_SECONDS,
              f"a lifetime in seconds from 1 to {MAX_TOKEN_TTL_SECONDS} (a week)")
SECONDS = _number(float, 1, None, "a number of seconds (at least 1)")


def _folder(text: str) -> Path:
    """Absolute, so a stack started from another folder uses the same one."""
    return Path(text).expanduser().resolve()


def parser() -> argparse.ArgumentParser:
    root = _Parser(prog="aef", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    root.add_argument("--state-dir", type=_folder, default=DEFAULT_STATE_DIR,
                      help="where the stack keeps keys, logs, data (default: .aef/)")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="run the local stack in the foreground")
    dev.add_argument("--host", default=DEFAULT_HOST)
    dev.add_argument("--port", type=PORT, default=DEFAULT_PORT)
    dev.add_argument("--database-url", default=None,
                     help="PostgreSQL server to use (default: DATABASE_URL, else "
                          "127.0.0.1:5432, else an embedded server)")
    dev.add_argument("--database", default=DEFAULT_DATABASE,
                     help="database created on that server (default: aef_dev)")
    dev.add_argument("--reset-db", action="store_true",
                     help="drop and recreate the database (and forget stored screenshots)")
    dev.add_argument("--embedded-postgres", action="store_true",
                     help="use the embedded PostgreSQL (in the state folder) even when "
                          "another server answers")
    dev.set_defaults(run=cmd_dev)

    token = sub.add_parser("token", help="print an access token for a dev user")
    token.add_argument("--user", default=DEMO_USER)
    token.add_argument("--ttl", type=TTL, default=DEFAULT_TTL_SECONDS,
                       help=f"lifetime in seconds (default {DEFAULT_TTL_SECONDS}, "
                            f"at most {MAX_TOKEN_TTL_SECONDS})")
    token.set_defaults(run=cmd_token)

    demo = sub.add_parser("demo", help="run the demo workflow end to end, watched live")
    demo.add_argument("--yes", action="store_true",
                      help="approve every checkpoint; on errors retry once, then skip; "
                           "stop the stack at the end without asking")
    demo.add_argument("--user", default=DEMO_USER)
    demo.add_argument("--port", type=PORT, default=DEFAULT_PORT,
                      help="port for the stack if one must be started")
    demo.add_argument("--database", default=DEFAULT_DATABASE)
    demo.add_argument("--embedded-postgres", action="store_true",
                      help="start the stack on the embedded PostgreSQL")
    demo.add_argument("--timeout", type=SECONDS, default=DEMO_TIMEOUT_SECONDS,
                      help="give up after this many seconds")
    demo.add_argument("--workflow", type=Path, default=None,
                      help="another workflow or SOP file to run against the demo site")
    demo.add_argument("--plain", action="store_true", default=None,
                      help="plain lines instead of the live panel")
    demo.set_defaults(run=cmd_demo)

    watch = sub.add_parser("watch", help="follow an execution live (read-only)")
    watch.add_argument("execution_id")
    watch.add_argument("--user", default=DEMO_USER)
    watch.add_argument("--poll", action="store_true", help="use /live polling only")
    watch.add_argument("--plain", action="store_true", default=None)
    watch.set_defaults(run=cmd_watch)

    from local.smoke import DEFAULT_PAGE, DEFAULT_TIMEOUT_SECONDS

    smoke = sub.add_parser("smoke", help="check a deployment end to end (transform, execute, "
                                         "live, logs, stop)")
    smoke.add_argument("--api", required=True,
                       help="the API's base URL (the stack's ApiUrl output, or aef dev's URL)")
    smoke.add_argument("--token", default=None,
                       help="a user's access token (default: $AEF_SMOKE_TOKEN)")
    smoke.add_argument("--page", default=DEFAULT_PAGE, help="the page the runner opens")
    smoke.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS,
                       help="seconds to wait for the runner to reach the manual step")
    smoke.set_defaults(run=cmd_smoke)
    return root


def explain(exc: BaseException) -> str | None:
    """The one line to print for an error a person can cause, or None for our own bugs."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from aef.settings import describe_invalid
    from local.watch import ApiError

    if isinstance(exc, CliError | StackError | TimeoutError | BadKeyFile):
        return str(exc)
    if isinstance(exc, ApiError):
        return f"the API refused: {exc}"
    if isinstance(exc, EOFError):
        return "stdin was closed while a question was asked; the execution was stopped"
    if isinstance(exc, ValidationError | SettingsError):
        return f"invalid settings: {describe_invalid(exc)}"
    if isinstance(exc, psycopg.Error):
        return f"PostgreSQL: {str(exc).strip() or type(exc).__name__}"
    if isinstance(exc, httpx.HTTPStatusError):
        return (f"the local stack answered {exc.response.status_code} to "
                f"{exc.request.method} {exc.request.url.copy_with(query=None)}; see its log")
    if isinstance(exc, httpx.HTTPError):
        where = (f" ({exc.request.url.copy_with(query=None)})"
                 if isinstance(exc, httpx.RequestError) else "")
        return (f"the local stack stopped answering{where}: {type(exc).__name__}: {exc}; "
                "is `aef dev` still running?")
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run_command(args: argparse.Namespace) -> int:
    """The command's exit status; an error a person caused is printed as one line."""
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise  # a bug of ours: the traceback is what a report needs
        print(ERROR_PREFIX + _one_line(message), file=sys.stderr)
        return 1
    return code


def _sigterm_as_ctrl_c(signum: int, frame: Any) -> None:
    os.kill(os.getpid(), signal.SIGINT)


def main(argv: list[str] | None = None) -> NoReturn:
    """The `aef` command. It leaves without the interpreter's teardown: everything it started
    is stopped by then, and freeing the modules the stack imports (moto, boto3, every function)
    takes seconds on a busy machine, which Ctrl-C should not."""
    args = parser().parse_args(argv)
    if args.run is not cmd_dev:  # `aef dev` handles its own signals
        # a `kill` stops a client as Ctrl-C does: cleanly, with what it started
        signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)
    code = run_command(args)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that went away
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
