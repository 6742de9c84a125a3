"""A program in a pseudo-terminal, driven as a person at a keyboard drives it.

The program gets the pty as its controlling terminal, so Ctrl-C (`\\x03`) is turned into
SIGINT for its foreground process group by the terminal itself, exactly as in a shell.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

# Runs first in the child: take the pty (already on stdin) as the controlling terminal of the
# new session, give SIGINT its default disposition back as a shell does for a foreground job
# (an ignored SIGINT is inherited through exec: a test that ignored it earlier in this process
# would leave the program deaf to Ctrl-C), then become the real program (same pid).
_TAKE_TERMINAL = ("import fcntl, os, signal, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                  "signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class Terminal:
    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path,
                 columns: int = 200) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "-c", _TAKE_TERMINAL, *argv], stdin=slave, stdout=slave,
            stderr=slave, env={**env, "TERM": "xterm-256color"}, cwd=cwd,
            start_new_session=True)
        os.close(slave)
        self.master = master
        self.raw = b""

    @property
    def text(self) -> str:
        """Everything shown so far, without colours and cursor moves."""
        return _ANSI.sub(b"", self.raw).decode(errors="replace")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            chunk = b""
        self.raw += chunk
        return bool(chunk)

    def expect(self, pattern: str, timeout: float, *, after: int = 0) -> re.Match[str]:
        """Wait until `pattern` shows up (searching from `after`); fails with the screen."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text[after:])
            if found:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{pattern!r} did not show in {timeout:.0f} s:\n"
                                     f"{self.text[-5000:]}")
            if not self._read(min(remaining, 0.5)) and self.process.poll() is not None:
                raise AssertionError(f"the program exited ({self.process.returncode}) before "
                                     f"{pattern!r} showed:\n{self.text[-5000:]}")

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if the program is still running after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.05)
        while select.select([self.master], [], [], 0)[0] and self._read(0):
            pass  # what it printed last
        return self.process.poll()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self.master)
