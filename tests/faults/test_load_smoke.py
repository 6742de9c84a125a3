"""A short run of bench/load/run.py: 5 executions' runner traffic through the runner role,
their watchers through the functions, 20 Realtime subscribers — nothing lost, full fan-out.
"""

from __future__ import annotations

import pytest

from bench.load.run import LoadOptions, run_load

pytestmark = pytest.mark.slow


def test_short_load_run_loses_nothing_and_fans_out_to_every_client(
        database_url: str, functions_database_url: str, runner_database_url: str) -> None:
    opts = LoadOptions(executions=5, clients=20, seconds=5, baseline_seconds=0, step_ms=300,
                       checkpoint_every=3, answer_ms=100, poll_ms=500, logs_every=2,
                       runner_connections=4, api_connections=4, drain_seconds=15)
    report = run_load(opts, database_url=database_url, functions_url=functions_database_url,
                      runner_url=runner_database_url, quiet=True)

    checks = report.checks
    assert checks["executions"] == 5 + 1  # and the checkpoint probe's
    assert checks["gapless"] == 6, "every execution's seq is 1..last_seq"
    assert checks["broadcastOnce"] == 6, "every event broadcast exactly once"
    assert checks["lostRunnerEvents"] == 0 and checks["duplicateRunnerSeqs"] == 0
    assert checks["runnerErrors"] == 0, report.loaded["runnerErrors"]
    loaded = report.loaded
    assert loaded["steps"] >= 5 * 5 and loaded["checkpoints"] >= 5
    assert loaded["apiCheckpointStatuses"] == {"200": loaded["checkpoints"]}
    # every answer timed to the runner's next action (woken by the answer's NOTIFY)
    assert loaded["checkpointResume"]["n"] == loaded["checkpoints"]
    assert loaded["checkpointResume"]["p50"] > 0, loaded["checkpointResume"]
    probe = loaded["checkpointProbe"]  # one more runner, in its own process, asked every step
    assert probe["error"] is None and probe["n"] >= 1 and probe["p95"] > 0, probe

    rt = report.realtime
    assert rt["clientErrors"] == []
    assert (rt["clients"], rt["clientsComplete"]) == (20, 20), rt
    assert rt["missing"] == rt["duplicates"] == rt["outOfOrder"] == 0
    # 4 subscribers per channel; the channel carries the runner's events and one event per
    # checkpoint answer (written by the API, so without a runner commit time to measure from)
    assert rt["frames"] == 4 * (loaded["events"] + loaded["checkpoints"])
    assert rt["deliveryMs"]["n"] == 4 * loaded["events"]

    api = report.api
    assert api["errors"] == 0 and api["watcherErrors"] == []
    assert api["watcherGaps"] == 0 and api["watchersComplete"] == 5
    assert api["logOrderErrors"] == 0
    assert api["checkpointsSeen"] == loaded["checkpoints"]
    assert report.ok
