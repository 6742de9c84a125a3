"""The runner's own errors: a stable code and a redactable detail, never an HTTP status.

The runner answers no HTTP request, so its errors do not derive from `aef.errors.AefError`
(whose status is for problem+json responses). The codes are stable: they appear in log
lines and tests (`element_not_found`, `needs_human`, `blocked`, ...). `extra` carries
structured details (an escalation's candidates, a guard block's category).
"""

from __future__ import annotations

from typing import Any


class RunnerError(Exception):
    """A failure inside the runner: `code` (stable), `title`, `detail` (the message)."""

    code: str
    title: str = "The runner failed"

    def __init__(self, detail: str | None = None, *, code: str | None = None,
                 **extra: Any) -> None:
        if code is None and not hasattr(self, "code"):
            raise TypeError(f"{type(self).__name__} needs a code")
        self.detail = detail or self.title
        super().__init__(self.detail)
        self.code = code or self.code
        self.extra = extra


# --- the errors of one action (runner.actions), classified for the engine's escalation ladder


class ActionError(RunnerError):
    """Base of the runner's action errors; ``detail`` is always redacted."""

    code, title = "action_failed", "The action failed"
    transient = False


class TransientError(ActionError):
    code, title = "transient_error", "A temporary failure; retrying may help"
    transient = True


class StepError(ActionError):
    code, title = "step_failed", "The step failed"


class VerificationFailed(StepError):
    code, title = "verification_failed", "The page is not in the expected state"


class NeedsHuman(StepError):
    """A StepError, so an engine that only knows StepError still asks a person."""

    code, title = "needs_human", "A person has to do or confirm this step"


class Blocked(StepError):
    code, title = "blocked", "Blocked by the network guard"


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (a Playwright call log below it may quote values)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def then_tell(message: str, hint: str) -> str:
    """`message`, then `hint` as the next sentence (Playwright's messages end in a period)."""
    message = message.rstrip()
    return f"{message} {hint}" if message.endswith((".", "!", "?", "…")) else f"{message}. {hint}"
