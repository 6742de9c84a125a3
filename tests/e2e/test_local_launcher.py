"""The local launcher reaps every runner it started: none is left `<defunct>`, and a runner
that has exited is never signalled (its pid may be someone else's by then)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aef.launcher import LocalLauncher
from aef.settings import Settings
from tests.waiting import wait_until


def defunct_children() -> list[int]:
    """Zombie children of this process, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == os.getpid():
                found.append(int(entry.name))
    return found


def test_a_runner_that_exits_is_reaped_and_never_signalled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = LocalLauncher(Settings(), log_dir=tmp_path)
    monkeypatch.setenv("AEF_HEADLESS", "perhaps")  # the runner refuses it and exits at once
    launch = launcher.launch("00000000-0000-0000-0000-000000000001", "runner-secret-value")
    pid = int(launch.task_arn.split(":", 1)[1])
    wait_until(lambda: launcher.running() == [], within=60, what="the runner to exit")
    assert pid not in defunct_children()
    assert launcher.stop(launch.task_arn, "test") is False  # gone: nothing to stop
    assert launcher.stop_all(0.1) == 0
    log = (tmp_path / "runner-00000000-0000-0000-0000-000000000001.log").read_text()
    assert "AEF_HEADLESS" in log and "runner-secret-value" not in log


def test_a_pid_it_did_not_start_is_left_alone(tmp_path: Path) -> None:
    launcher = LocalLauncher(Settings(), log_dir=tmp_path)
    assert launcher.stop(f"local:{os.getpid()}", "test") is False
    assert launcher.stop("arn:aws:ecs:task/x", "test") is False
