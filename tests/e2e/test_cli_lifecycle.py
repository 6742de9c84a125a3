"""The CLI over a run's whole life, in a real terminal: Ctrl-C, the end of a demo, restarts.

`aef demo` runs in a pseudo-terminal (`tests/e2e/terminal.py`) with a one-checkpoint workflow
against the local demo site, so a person's keys reach it as they would: Enter answers, Ctrl-C
is turned into SIGINT by the terminal. Runner processes are looked up in /proc: a finished
runner must be reaped (never `<defunct>`). Screenshots stored by a stack must still be served,
at the URLs handed out before, after that stack was stopped and started again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from local.state import StackInfo, StateDir, pid_alive
from tests.e2e.conftest import (
    ROOT,
    RunningStack,
    aef,
    clean_env,
    drop_database,
    new_database_name,
    new_state_dir,
    start_dev,
    stop_dev,
)
from tests.e2e.terminal import Terminal
from tests.waiting import wait_until

pytestmark = [pytest.mark.browser]

PROMPT = r"approve / reject / skip \[\w+\]: "
EXECUTION = r"Execution ([0-9a-f-]{36}) \w+; live on channel"
STAYS_UP = "The local stack stays up so these links work"
# a checkpoint before the second step ("Submit ..." reads as irreversible)
CHECKPOINT_WORKFLOW: dict[str, Any] = {
    "meta": {"id": "one-checkpoint", "title": "One checkpoint", "version": "1.0.0"},
    "execution": {"workflow": {
        "nodes": [
            {"id": "open_login", "type": "atomic_task", "label": "Open the sign-in page",
             "intent": "Open the Demo Mail sign-in page",
             "actions": [{"type": "navigate", "url": "{{base_url}}/mail/login"}]},
            {"id": "submit_visit", "type": "atomic_task", "label": "Submit the visit",
             "intent": "Open the demo CRM",
             "actions": [{"type": "navigate", "url": "{{base_url}}/crm/"}]},
        ],
        "flow": [{"from": "open_login", "to": "submit_visit"}],
    }},
}


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    path = tmp_path / "one-checkpoint.json"
    path.write_text(json.dumps(CHECKPOINT_WORKFLOW))
    return path


def aef_in_terminal(state: StateDir, *args: str) -> Terminal:
    return Terminal(["-m", "local.cli", "--state-dir", str(state.root), *args],
                    env=clean_env(), cwd=ROOT)


@dataclass
class Child:
    pid: int
    state: str  # R, S, Z (defunct) ...
    command: str


def children(pid: int) -> list[Child]:
    """The processes whose parent is `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(Child(int(entry.name), fields[0], command))
    return found


def execution_runner(child: Child) -> bool:
    """A runner of one execution (the stack's pool worker, `--pool`, lives as long as it)."""
    return "-m runner" in child.command and "--pool" not in child.command


def runners_done(stack_pid: int, timeout: float = 60) -> list[Child]:
    """Wait until no runner of the stack is running; returns the children left then."""
    deadline = time.monotonic() + timeout
    while True:
        left = children(stack_pid)
        if not any(execution_runner(c) and c.state != "Z" for c in left) \
                or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def execution_status(database_url: str, execution_id: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select status from aef_executions where id = %s",
                           (execution_id,)).fetchone()
    assert row is not None
    return str(row[0])


def wait_for_status(database_url: str, execution_id: str, wanted: set[str],
                    timeout: float = 30) -> str:
    def reached() -> str | None:
        status = execution_status(database_url, execution_id)
        return status if status in wanted else None
    return wait_until(reached, within=timeout, interval=0.2, what=f"status in {wanted}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token(state: StateDir) -> str:
    result = aef(state, "token")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def live_screenshot(url: str, bearer: str, execution_id: str) -> str:
    response = httpx.get(f"{url}/api/aef/live/{execution_id}", timeout=10,
                         headers={"Authorization": f"Bearer {bearer}"})
    assert response.status_code == 200, response.text
    shot = response.json()["message"]["browser"]["screenshot"]
    assert shot, response.json()
    return str(shot)


def jpeg_at(url: str) -> bytes:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:3] == b"\xff\xd8\xff"
    return response.content


# --------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_ctrl_c_at_a_checkpoint_prompt_cancels_and_exits_at_once(
        stack: RunningStack, workflow: Path) -> None:
    term = aef_in_terminal(stack.state, "demo", "--workflow", str(workflow))
    try:
        execution_id = term.expect(EXECUTION, 120)[1]
        term.expect(PROMPT, 120)
        pressed = time.monotonic()
        term.send(b"\x03")
        code = term.wait(15)
        took = time.monotonic() - pressed
    finally:
        term.close()
    assert code == 130, f"still running {took:.1f} s after Ctrl-C:\n{term.text[-3000:]}"
    assert "Traceback" not in term.text, term.text
    assert f"Stopping execution {execution_id}" in term.text
    status = wait_for_status(stack.info.database_url, execution_id, {"cancelled"})
    assert status == "cancelled"
    # the runner saw the stop, ended, and the stack reaped it
    left = runners_done(stack.process.pid)
    assert [c for c in left if c.state == "Z"] == [], left
    assert not any(execution_runner(c) for c in left), left


@pytest.mark.timeout(120)
def test_ctrl_c_while_watching_exits_at_once(stack: RunningStack) -> None:
    from tests.e2e.test_watch import start_idle_execution

    execution_id = asyncio.run(start_idle_execution(stack, token(stack.state)))
    term = aef_in_terminal(stack.state, "watch", execution_id, "--plain")
    try:
        term.expect(r"\[idle", 60)
        term.send(b"\x03")
        code = term.wait(15)
    finally:
        term.close()
    assert code == 130, term.text[-3000:]
    assert "Traceback" not in term.text, term.text


@pytest.fixture
def own_stack() -> Iterator[tuple[StateDir, str, int]]:
    """A state folder, database and port for a stack that `aef demo` starts itself."""
    state, database = new_state_dir(), new_database_name()
    try:
        yield state, database, free_port()
    finally:
        info = StackInfo.load(state.stack_file)
        if info is not None and pid_alive(info.pid):
            os.kill(info.pid, signal.SIGKILL)
        drop_database(database)
        shutil.rmtree(state.root, ignore_errors=True)


def stack_processes(state: StateDir) -> list[int]:
    """`aef dev` processes using this state folder."""
    needle = str(state.root)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if needle in command and " dev " in command:
                found.append(int(entry.name))
    return found


@pytest.mark.timeout(300)
def test_ctrl_c_while_the_stack_starts_leaves_nothing_running(
        own_stack: tuple[StateDir, str, int], workflow: Path) -> None:
    state, database, port = own_stack
    term = aef_in_terminal(state, "demo", "--yes", "--plain", "--port", str(port),
                           "--database", database, "--workflow", str(workflow))
    try:
        term.expect("Starting the local stack", 60)
        wait_until(lambda: stack_processes(state), within=60, interval=0.1,
                   what=f"`aef dev` up and preparing:\n{term.text}")
        term.send(b"\x03")
        code = term.wait(30)
    finally:
        term.close()
    assert code == 130, term.text[-3000:]
    assert "Traceback" not in term.text, term.text
    assert stack_processes(state) == []
    assert not port_open(port)


# --------------------------------------------------------------------------------------------
# The end of a demo, and a restart
# --------------------------------------------------------------------------------------------


def answer_every_prompt(term: Terminal, until: str, timeout: float) -> None:
    """Press Enter (the default answer) at every question until `until` shows."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        found = term.expect(f"({PROMPT})|({re.escape(until)})",
                            max(deadline - time.monotonic(), 1), after=seen)
        seen += found.end()
        if found[2]:
            return
        term.send(b"\r")


@pytest.mark.timeout(600)
def test_interactive_demo_keeps_its_stack_up_and_screenshots_survive_a_restart(
        own_stack: tuple[StateDir, str, int], workflow: Path) -> None:
    state, database, port = own_stack
    term = aef_in_terminal(state, "demo", "--plain", "--port", str(port), "--database",
                           database, "--workflow", str(workflow))
    try:
        execution_id = term.expect(EXECUTION, 180)[1]
        answer_every_prompt(term, STAYS_UP, 300)
        assert f"Execution   {execution_id}: completed" in term.text, term.text[-3000:]
        info = StackInfo.load(state.stack_file)
        assert info is not None and pid_alive(info.pid)
        # the summary's links work while the demo waits for Enter
        assert httpx.get(f"{info.supabase_url}/crm/", timeout=10).status_code == 200
        bearer = token(state)
        handed_out = live_screenshot(info.supabase_url, bearer, execution_id)
        shot = jpeg_at(handed_out)
        # the runner has ended and was reaped: no defunct child of the stack
        left = runners_done(info.pid)
        assert [c for c in left if c.state == "Z"] == [], left
        term.send(b"\r")
        code = term.wait(30)
    finally:
        term.close()
    assert code == 0, term.text[-3000:]
    assert "Traceback" not in term.text, term.text
    assert not pid_alive(info.pid) and not port_open(port)
    log = (state.logs / "dev.log").read_text()
    assert "runner(s) still running" not in log  # nothing left to kill at shutdown

    # the same folder, a new stack: the objects and the URLs handed out before are back
    restarted = start_dev(state, database, port)
    try:
        assert jpeg_at(handed_out) == shot
        assert jpeg_at(live_screenshot(restarted.url, bearer, execution_id)) == shot
        assert re.search(r"stored in .*s3 \([1-9]\d* writes restored\)", restarted.log_tail())
    finally:
        assert stop_dev(restarted.process, signal.SIGINT) == 0


@pytest.mark.timeout(600)
def test_demo_with_yes_in_a_terminal_stops_its_stack_without_asking(
        own_stack: tuple[StateDir, str, int], workflow: Path) -> None:
    state, database, port = own_stack
    term = aef_in_terminal(state, "demo", "--yes", "--plain", "--port", str(port),
                           "--database", database, "--workflow", str(workflow))
    try:
        code = term.wait(420)
    finally:
        term.close()
    assert code == 0, term.text[-3000:]
    assert re.search(r"Execution   [0-9a-f-]{36}: completed", term.text), term.text[-3000:]
    assert STAYS_UP not in term.text
    assert "Stopping the local stack" in term.text
    assert stack_processes(state) == [] and not port_open(port)
