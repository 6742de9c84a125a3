"""`aef demo` holds Ctrl-C back while it starts the stack's process, so the process is
never left running unknown to it (a Ctrl-C inside `Popen` came before the pid was ours)."""

from __future__ import annotations

import os
import signal

from local.cli import ctrl_c_held


def test_a_ctrl_c_in_the_block_is_held_and_reported_after_it() -> None:
    before = signal.getsignal(signal.SIGINT)
    with ctrl_c_held() as held:
        os.kill(os.getpid(), signal.SIGINT)
        assert held == [signal.SIGINT]  # the handler ran here, instead of KeyboardInterrupt
    assert held == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is before


def test_without_a_ctrl_c_nothing_is_held() -> None:
    with ctrl_c_held() as held:
        pass
    assert held == []
