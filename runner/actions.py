"""Perform one plan ``Action`` on a page and say what happened, without ever leaking a secret.

``await perform(page, action, ctx)`` runs any action type of the plan contract (navigate,
click, fill, type, select, check, uncheck, press, scroll, wait, extract, verify, upload,
download, act) and returns an :class:`ActionResult` whose ``description`` is the live
message's ``lastAction``. ``action`` may be the pydantic ``aef.models.Action`` or a plain dict
with camelCase (or snake_case) keys.

Errors are classified for the engine's escalation ladder:

* :class:`TransientError` - worth an automatic retry after a delay: navigation ``net::ERR_*``
  errors, navigation timeouts, HTTP 5xx/429 on navigate, and an element that did not appear in
  time **on the first attempt** (``ctx.attempt == 1``). Decision: a selector that times out is
  transient once, because slow pages are the common cause; on a retry (``attempt >= 2``) the
  same timeout is a :class:`StepError`, so a wrong selector reaches a person after one retry.
* :class:`StepError` - needs a decision (retry / skip / takeover): anything else, e.g. HTTP 4xx
  on navigate, an option that does not exist, a strict-mode violation, a closed browser.
  :class:`VerificationFailed` is the StepError of ``verify``.
* :class:`NeedsHuman` - grounding escalated (ambiguous or unsure): make it a manual step.
  ``exc.extra["escalation"]`` holds the reason and the candidates.
* :class:`Blocked` - the network guard refused the URL (``exc.extra["category"]``).

NeedsHuman and Blocked subclass StepError (never retried automatically); check them first.

``{{name}}`` placeholders (the ASCII grammar of :mod:`aef.placeholders`, the one the transform
lists inputs by) are filled from ``ctx.variables`` first, then ``ctx.secrets``. Every
description, error message and log line passes through :class:`Redactor`, and an error never
chains the original Playwright exception (its call log may quote values).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame, Keyboard, Locator, Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from pydantic import ValidationError

from aef.models import ACTION_TYPES, Action
from aef.placeholders import replace_placeholders
from aef.url_policy import GuardPolicy, Verdict, check_url
from runner.errors import RunnerError
from runner.grounding import (
    ChainResolver,
    Escalation,
    GroundingResolver,
    Resolution,
    Resolver,
    build_resolver,
    hit_test,
    locator_from_cached,
    match_summary,
)
from runner.redaction import MASK, Redactor, templatize
from runner.safety import BLOCK_HEADER, NetworkGuard

log = logging.getLogger("runner.actions")

DEFAULT_TIMEOUT_MS = 10_000.0
MAX_PLAIN_WAIT_MS = 60_000.0
_LOAD_STATES = ("load", "domcontentloaded", "networkidle", "commit")


# --------------------------------------------------------------------------- errors


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


# --------------------------------------------------------------------------- action model


def normalize_action(action: Any) -> Action:
    """The plan's ``aef.models.Action`` as is; a camelCase or snake_case dict (or another
    pydantic model) is read into one. A type is case-insensitive; a bad action is a StepError."""
    if isinstance(action, Action):
        return action
    if hasattr(action, "model_dump"):
        data = action.model_dump(by_alias=True, exclude_none=True)
    elif isinstance(action, Mapping):
        data = {key: value for key, value in action.items() if value is not None}
    else:
        raise StepError(f"unsupported action object {type(action).__name__}")
    kind = str(data.get("type", "")).strip().lower()
    if kind not in ACTION_TYPES:
        raise StepError(f"unknown action type {kind or '(none)'!r}")
    data["type"] = kind
    if "value" in data and not isinstance(data["value"], str):
        data["value"] = str(data["value"])  # every reader of a value takes its str()
    try:
        return Action.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise StepError(f"invalid {kind} action: {where}: {problem['msg']}") from None


# --------------------------------------------------------------------------- context/result


@dataclass
class ActionContext:
    """Everything an action needs besides the page.

    Build it either from parts (``work_dir``, ``guard``/``policy``...) or with ``settings`` and
    ``session`` (a ``runner.browser.BrowserSession``), which fill in the work dir, the guard,
    the network policy and the grounding threshold. ``attempt`` is the step's try number (see
    the timeout decision in the module docstring); ``cached`` is the resolution hint for an
    ``act`` action; ``log(level, message)`` receives redacted notes (grounding, cache misses).
    """

    work_dir: Path | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    resolver: Resolver | None = None
    guard: NetworkGuard | None = None
    policy: GuardPolicy | None = None  # used when there is no guard (pure URL check)
    grounding_threshold: float | None = None
    default_timeout_ms: float = DEFAULT_TIMEOUT_MS
    attempt: int = 1
    settings: Any = None
    session: Any = None
    cached: dict[str, Any] | None = None
    log: Callable[[str, str], Any] | None = None

    def __post_init__(self) -> None:
        if self.session is not None:
            self.settings = self.settings or self.session.settings
            self.guard = self.guard or self.session.guard
            self.work_dir = self.work_dir or self.session.work_dir
        if self.settings is not None:
            self.policy = self.policy or self.settings
            if self.grounding_threshold is None:
                self.grounding_threshold = float(self.settings.grounding_threshold)
            if self.work_dir is None:
                self.work_dir = Path(self.settings.work_dir)
        if self.work_dir is None:
            raise ValueError("ActionContext needs work_dir, session or settings")
        self.work_dir = Path(self.work_dir).resolve()
        if self.grounding_threshold is None:
            self.grounding_threshold = 0.75
        if self.guard is not None and self.secrets:
            self.guard.redact = self.redactor.redact

    @property
    def root(self) -> Path:
        assert self.work_dir is not None
        return self.work_dir

    @property
    def downloads_dir(self) -> Path:
        return self.root / "downloads"

    @property
    def redactor(self) -> Redactor:
        return Redactor(self.secrets)

    def note(self, level: str, message: str) -> None:
        """Send a redacted note to the engine's journal (if it gave us one)."""
        if self.log is None:
            return
        try:
            self.log(level, self.redactor.redact(message))
        except Exception:
            log.debug("journal callback failed", exc_info=True)

    def get_resolver(self) -> Resolver:
        if self.resolver is None:
            if self.settings is not None:
                self.resolver = build_resolver(self.settings)
            else:
                self.resolver = GroundingResolver(self.grounding_threshold or 0.75)
        return self.resolver

    @classmethod
    def for_session(
        cls,
        session: Any,
        *,
        variables: dict[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        resolver: Resolver | None = None,
        attempt: int = 1,
    ) -> ActionContext:
        """A context bound to a ``runner.browser.BrowserSession`` (its guard and work dir)."""
        return cls(
            variables=variables if variables is not None else {},
            secrets=secrets or {},
            resolver=resolver,
            attempt=attempt,
            session=session,
        )


@dataclass
class ActionResult:
    type: str
    description: str  # lastAction for the live message; redacted
    url: str  # the page URL after the action; redacted
    value: Any = None  # extracted value / download path
    variable: str | None = None
    resolution: dict[str, Any] | None = None  # act: cache this per step and pass it back
    status: int | None = None  # navigate: HTTP status
    path: str | None = None  # upload/download file
    duration_ms: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- substitution

def _lookup(name: str, variables: Mapping[str, Any]) -> tuple[bool, Any]:
    if name in variables:
        return True, variables[name]
    head, *rest = name.split(".")
    if head not in variables:
        return False, None
    value: Any = variables[head]
    for part in rest:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def substitute(
    text: str,
    variables: Mapping[str, Any],
    secrets: Mapping[str, str] | None,
) -> tuple[str, bool]:
    """Fill ``{{name}}`` (dotted paths into variables allowed); returns (text, used a secret).

    With ``secrets=None`` secret placeholders are left as they are (grounding works on the
    template, so a resolution never contains a secret). Unknown names raise StepError.
    """
    used_secret = False

    def value_of(name: str) -> str | None:
        nonlocal used_secret
        found, value = _lookup(name, variables)
        if found:
            return _stringify(value)
        if secrets is None:
            return None
        if name in secrets:
            used_secret = True
            return str(secrets[name])
        raise StepError(f"no variable or credential named {{{{{name}}}}}")

    return replace_placeholders(text, value_of), used_secret


# --------------------------------------------------------------------------- perform

Handler = Callable[[Page, Action, ActionContext, dict[str, Any] | None], Awaitable[ActionResult]]


async def perform(
    page: Page,
    action: Any,
    ctx: ActionContext,
    *,
    cached: dict[str, Any] | None = None,
) -> ActionResult:
    """Run one action. ``cached`` is a previous ``ActionResult.resolution`` for an ``act``
    action: it is replayed without grounding while it still matches exactly one element."""
    redactor = ctx.redactor
    started = time.monotonic()
    try:
        act = normalize_action(action)
        result = await _HANDLERS[act.type](page, act, ctx, cached or ctx.cached)
    except ActionError as exc:
        raise _redacted(exc, redactor) from None
    except PlaywrightTimeoutError as exc:
        raise _redacted(_classify_timeout(exc, ctx, navigation=False), redactor) from None
    except PlaywrightError as exc:
        raise _redacted(_classify_playwright(exc), redactor) from None
    except Exception as exc:
        raise StepError(redactor.redact(f"{type(exc).__name__}: {exc}")) from None
    result.description = redactor.redact(result.description)[:300]
    result.url = redactor.redact(result.url)
    result.value = redactor.redact_value(result.value)
    result.duration_ms = int((time.monotonic() - started) * 1000)
    log.debug("%s", result.description)
    return result


def _redacted(exc: ActionError, redactor: Redactor) -> ActionError:
    exc.detail = redactor.redact(exc.detail)
    exc.args = (exc.detail,)
    exc.extra = redactor.redact_value(exc.extra)
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _classify_timeout(exc: BaseException, ctx: ActionContext, *, navigation: bool) -> ActionError:
    message = _first_line(exc)
    if navigation or ctx.attempt <= 1:
        return TransientError(message)
    return StepError(f"{message} (still failing on attempt {ctx.attempt})",
                     code="element_not_found")


def _classify_playwright(exc: PlaywrightError) -> ActionError:
    message = _first_line(exc)
    if "net::ERR_BLOCKED_BY_CLIENT" in message:
        return Blocked(message)
    if "net::ERR_" in message:
        return TransientError(message)
    if "has been closed" in message or "Target closed" in message:
        return StepError(message, code="browser_closed")
    if "strict mode violation" in message:
        return StepError(message, code="ambiguous_selector")
    return StepError(message)


def _timeout(act: Action, ctx: ActionContext) -> float:
    return act.timeout_ms if act.timeout_ms is not None else ctx.default_timeout_ms


def _text(value: str | None, ctx: ActionContext) -> tuple[str, bool]:
    if value is None:
        return "", False
    return substitute(str(value), ctx.variables, ctx.secrets)


def _locator(page: Page, act: Action, ctx: ActionContext) -> tuple[Locator, str]:
    if not act.selector:
        raise StepError(f"{act.type} needs a selector")
    selector, _ = _text(act.selector, ctx)
    return page.locator(selector), selector


def _shown(value: str, secret: bool) -> str:
    if secret:
        return MASK
    return value if len(value) <= 60 else value[:57] + "..."


def _result(page: Page, act: Action, description: str, **extra: Any) -> ActionResult:
    return ActionResult(type=act.type, description=description, url=page.url, **extra)


# ---- navigation


async def _check(url: str, ctx: ActionContext) -> Verdict:
    if ctx.guard is not None:
        verdict = await ctx.guard.check(url)
        if not verdict.allowed and verdict.category != "dns":
            ctx.guard.report(url, verdict, "navigate")
        return verdict
    if ctx.policy is None:
        raise StepError("no network policy configured for navigation")
    return check_url(url, ctx.policy)


ERROR_PAGE = "chrome-error://"
ERROR_PAGE_WAIT_S = 3.0


def _leaves_error_page(exc: PlaywrightError) -> bool:
    """A network failure commits an error page; an aborted navigation (a download, a 204)
    does not."""
    message = _first_line(exc)
    return "net::ERR_" in message and "net::ERR_ABORTED" not in message


def _interrupted_by_error_page(exc: PlaywrightError) -> bool:
    """True when a navigation lost to the late error page of an earlier failed one."""
    return f'another navigation to "{ERROR_PAGE}' in _first_line(exc)


async def goto(page: Page, url: str, *, timeout_ms: float, wait_until: str = "load") -> Any:
    """``page.goto`` that leaves the page ready for the next navigation.

    Chromium leaves one race open: a failed navigation's error page commits 50-200 ms after
    the failure is reported (longer on a busy machine). Here a failure waits until its own
    error page has committed and loaded (the page may already have shown an older one, so the
    URL alone proves nothing).
    """
    error_page = asyncio.Event()

    def on_navigated(frame: Frame) -> None:
        if frame == page.main_frame and frame.url.startswith(ERROR_PAGE):
            error_page.set()

    page.on("framenavigated", on_navigated)
    try:
        return await _goto_past_a_late_error_page(page, url, timeout_ms, wait_until, error_page)
    except PlaywrightError as exc:
        if not isinstance(exc, PlaywrightTimeoutError) and _leaves_error_page(exc):
            with contextlib.suppress(TimeoutError, PlaywrightError):
                await asyncio.wait_for(error_page.wait(), ERROR_PAGE_WAIT_S)
                await page.wait_for_load_state("load", timeout=ERROR_PAGE_WAIT_S * 1000)
        raise
    finally:
        page.remove_listener("framenavigated", on_navigated)


async def _goto_past_a_late_error_page(
    page: Page, url: str, timeout_ms: float, wait_until: str, error_page: asyncio.Event
) -> Any:
    """A navigation that lost to an earlier failure's late error page is still on its way in
    Chromium: let it land, then start it again so the caller gets its response."""
    try:
        return await page.goto(url, timeout=timeout_ms, wait_until=wait_until)  # type: ignore[arg-type]
    except PlaywrightError as exc:
        if isinstance(exc, PlaywrightTimeoutError) or not _interrupted_by_error_page(exc):
            raise
    log.info("navigation to %s lost to a late error page; starting it again", url)
    with contextlib.suppress(PlaywrightError):
        await page.wait_for_url(lambda now: not now.startswith(ERROR_PAGE),
                                timeout=min(timeout_ms, ERROR_PAGE_WAIT_S * 1000))
    error_page.clear()  # that error page was the earlier failure's, not ours
    return await page.goto(url, timeout=timeout_ms, wait_until=wait_until)  # type: ignore[arg-type]


async def _navigate(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    url, secret = _text(act.url or act.value, ctx)
    if not url:
        raise StepError("navigate needs a url")
    verdict = await _check(url, ctx)
    if not verdict.allowed:
        if verdict.category == "dns":
            raise TransientError(f"{verdict.reason} ({url})")
        raise Blocked(f"navigation to {url} blocked: {verdict.reason}",
                      category=verdict.category)
    wait_until = act.state if act.state in _LOAD_STATES else "load"
    blocks_before = len(ctx.guard.blocks) if ctx.guard else 0
    try:
        response = await goto(page, url, timeout_ms=_timeout(act, ctx), wait_until=wait_until)
    except PlaywrightTimeoutError as exc:
        raise _classify_timeout(exc, ctx, navigation=True) from None
    except PlaywrightError as exc:
        new_blocks = ctx.guard.blocks[blocks_before:] if ctx.guard else []
        if new_blocks:
            raise Blocked(f"navigation to {url} blocked: {new_blocks[-1].reason}",
                          category=new_blocks[-1].category) from None
        raise _classify_playwright(exc) from None
    status = response.status if response is not None else None
    if response is not None and response.headers.get(BLOCK_HEADER.lower()):
        reason = ctx.guard.blocks[-1].reason if ctx.guard and ctx.guard.blocks else "blocked"
        raise Blocked(f"navigation to {url} blocked: {reason}",
                      category=response.headers.get(BLOCK_HEADER.lower()))
    shown = MASK if secret else url
    if status is not None and (status >= 500 or status == 429):
        raise TransientError(f"{shown} answered HTTP {status}", http_status=status)
    if status is not None and status >= 400:
        raise StepError(f"{shown} answered HTTP {status}", code="http_error", http_status=status)
    return _result(page, act, f"Opened {page.url}", status=status)


# ---- element actions


async def _click(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    loc, selector = _locator(page, act, ctx)
    await loc.click(timeout=_timeout(act, ctx))
    return _result(page, act, f"Clicked {selector}")


def _fill_value(act: Action, ctx: ActionContext) -> tuple[str, bool]:
    if act.credential_field:
        name = act.credential_field
        if name in ctx.secrets:
            return str(ctx.secrets[name]), True
        found, value = _lookup(name, ctx.variables)
        if not found:
            raise StepError(f"no credential named {name}")
        return _stringify(value), False
    return _text(act.value, ctx)


TYPE_CHUNK: Final = 32  # keys per driver call: a stop lands between two chunks (< 1 s)
TYPE_KEYS_MAX: Final = 256  # longer values are filled, and only their tail is typed
CARET_TO_END: Final = """el => {
  if (typeof el.selectionStart === 'number') {
    el.selectionStart = el.selectionEnd = el.value.length;
  } else if (el.isContentEditable) {
    const range = document.createRange();
    range.selectNodeContents(el);
    range.collapse(false);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  }
}"""


async def type_keys(keyboard: Keyboard, text: str, *, delay: float = 0) -> None:
    """Type `text` as key presses in short chunks: one driver call for a long text keeps the
    browser typing after the runner was told to stop; chunks give the stop a way in."""
    for start in range(0, len(text), TYPE_CHUNK):
        await keyboard.type(text[start:start + TYPE_CHUNK], delay=delay)


async def type_text(page: Page, loc: Locator, value: str, *, timeout_ms: float) -> None:
    """`type`: key by key like a person (pages that listen to key events see them). A long
    value is filled first and only its last keys are typed: 10,000 characters at 15 ms a key
    would hold the step for minutes."""
    head, tail = (value[:-TYPE_CHUNK], value[-TYPE_CHUNK:]) if len(value) > TYPE_KEYS_MAX \
        else ("", value)
    await loc.fill(head, timeout=timeout_ms)
    await loc.focus(timeout=timeout_ms)
    if head:
        await loc.evaluate(CARET_TO_END)
    await type_keys(page.keyboard, tail, delay=15)


async def _fill(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    loc, selector = _locator(page, act, ctx)
    value, secret = _fill_value(act, ctx)
    timeout = _timeout(act, ctx)
    if act.type == "type":
        await type_text(page, loc, value, timeout_ms=timeout)
        verb = "Typed into"
    else:
        await loc.fill(value, timeout=timeout)
        verb = "Filled"
    return _result(page, act, f"{verb} {selector} with {_shown(value, secret)}")


async def _select(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    loc, selector = _locator(page, act, ctx)
    value, secret = _fill_value(act, ctx)
    await _select_option(loc, value, _timeout(act, ctx), f"{_shown(value, secret)} in {selector}")
    return _result(page, act, f"Selected {_shown(value, secret)} in {selector}")


_HAS_OPTION_JS = """(e, v) => e.tagName !== 'SELECT' || Array.from(e.options).some(
    (o) => o.value === v || o.label === v || o.text.trim() === v)"""


async def _select_option(loc: Locator, value: str, wait_ms: float, shown: str) -> None:
    """Select by value or label. A dropdown that is there but never gets the option is a
    StepError (wrong data), not a timeout to retry."""
    await loc.wait_for(state="attached", timeout=wait_ms)

    async def has_option() -> bool:
        found: bool = await loc.evaluate(_HAS_OPTION_JS, value)
        return found

    if not await _poll(has_option, wait_ms):
        raise StepError(f"no option {shown}", code="option_missing")
    await loc.select_option(value, timeout=wait_ms)


async def _check_box(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    loc, selector = _locator(page, act, ctx)
    if act.type == "check":
        await loc.check(timeout=_timeout(act, ctx))
        return _result(page, act, f"Checked {selector}")
    await loc.uncheck(timeout=_timeout(act, ctx))
    return _result(page, act, f"Unchecked {selector}")


async def _press(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    key, _secret = _text(act.key or act.value, ctx)
    if not key:
        raise StepError("press needs a key")
    if act.selector:
        loc, selector = _locator(page, act, ctx)
        await loc.press(key, timeout=_timeout(act, ctx))
        return _result(page, act, f"Pressed {key} in {selector}")
    await page.keyboard.press(key)
    return _result(page, act, f"Pressed {key}")


async def _scroll(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    if act.selector:
        loc, selector = _locator(page, act, ctx)
        await loc.scroll_into_view_if_needed(timeout=_timeout(act, ctx))
        return _result(page, act, f"Scrolled to {selector}")
    where = str(act.value if act.value is not None else "down").strip().lower()
    scripts = {
        "top": "() => window.scrollTo(0, 0)",
        "bottom": "() => window.scrollTo(0, document.documentElement.scrollHeight)",
        "down": "() => window.scrollBy(0, window.innerHeight * 0.8)",
        "up": "() => window.scrollBy(0, -window.innerHeight * 0.8)",
    }
    if where in scripts:
        await page.evaluate(scripts[where])
        return _result(page, act, f"Scrolled {where}")
    try:
        pixels = int(float(where))
    except ValueError:
        raise StepError(
            f"scroll value must be top, bottom, up, down or pixels, not {where!r}"
        ) from None
    await page.evaluate("(dy) => window.scrollBy(0, dy)", pixels)
    return _result(page, act, f"Scrolled {pixels}px")


# ---- waiting and checking


async def _wait(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    timeout = _timeout(act, ctx)
    if act.selector:
        loc, selector = _locator(page, act, ctx)
        state = act.state or "visible"
        if state not in ("visible", "hidden", "attached", "detached"):
            raise StepError(f"wait state must be visible, hidden, attached or detached for a "
                            f"selector, not {state!r}")
        await loc.first.wait_for(state=state, timeout=timeout)  # type: ignore[arg-type]
        return _result(page, act, f"Waited for {selector} to be {state}")
    if act.url_contains:
        fragment, _secret = _text(act.url_contains, ctx)
        await page.wait_for_url(lambda u: fragment in u, timeout=timeout,
                                wait_until="commit")
        return _result(page, act, f"Waited for the URL to contain {fragment}")
    if act.state:
        if act.state not in _LOAD_STATES:
            raise StepError(f"unknown load state {act.state!r}")
        await page.wait_for_load_state(act.state, timeout=timeout)  # type: ignore[arg-type]
        return _result(page, act, f"Waited for {act.state}")
    if act.timeout_ms is not None:
        delay = min(act.timeout_ms, MAX_PLAIN_WAIT_MS)
        await asyncio.sleep(delay / 1000)
        return _result(page, act, f"Waited {int(delay)} ms")
    await page.wait_for_load_state("load", timeout=timeout)
    return _result(page, act, "Waited for the page to load")


async def _poll(check: Callable[[], Awaitable[bool]], timeout_ms: float) -> bool:
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        if await check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


async def _element_text(loc: Locator, wait_ms: float) -> str:
    text: str = await loc.evaluate(
        "e => (['INPUT', 'TEXTAREA', 'SELECT'].includes(e.tagName) ? e.value : e.innerText)",
        timeout=wait_ms,
    )
    return (text or "").strip()


async def _verify(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    timeout = _timeout(act, ctx)
    checks: list[str] = []
    if act.url_contains:
        fragment, _secret = _text(act.url_contains, ctx)

        async def url_matches() -> bool:
            return fragment in page.url

        if not await _poll(url_matches, timeout):
            raise VerificationFailed(f"the URL {page.url} does not contain {fragment!r}")
        checks.append(f"URL contains {fragment}")
    pattern = re.compile(act.pattern) if act.pattern else None
    expected, secret = _text(act.value, ctx) if act.value is not None else ("", False)
    if act.selector:
        loc, selector = _locator(page, act, ctx)
        state = act.state or "visible"
        try:
            await loc.first.wait_for(state=state, timeout=timeout)  # type: ignore[arg-type]
        except PlaywrightTimeoutError:
            raise VerificationFailed(f"{selector} is not {state} after {int(timeout)} ms") \
                from None
        checks.append(f"{selector} is {state}")
        target: Locator | None = loc.first if state in ("visible", "attached") else None
    else:
        target = page.locator("body") if (pattern or expected) else None
    if target is not None and (pattern or expected):
        last = ""

        async def matches() -> bool:
            nonlocal last
            try:
                last = await _element_text(target, 1000)
            except PlaywrightError:
                return False
            if pattern is not None and not pattern.search(last):
                return False
            return not expected or expected in last

        if not await _poll(matches, timeout):
            what = f"/{act.pattern}/" if pattern is not None else _shown(expected, secret)
            seen = last if len(last) <= 120 else last[:117] + "..."
            raise VerificationFailed(f"text {seen!r} does not match {what}")
        checks.append("text matches")
    if not checks:
        raise StepError("verify needs urlContains, selector, pattern or value")
    return _result(page, act, "Verified: " + ", ".join(checks))


# ---- extraction

_SCHEMA_JS = r"""
([root, keys]) => {
  const scope = root || document.body;
  const norm = (s) => (s || '').replace(/\s+/g, ' ').trim();
  const valueOf = (e) => {
    if (!e) return null;
    if (['INPUT', 'TEXTAREA', 'SELECT'].includes(e.tagName)) return norm(e.value);
    if (e.hasAttribute('content')) return norm(e.getAttribute('content'));
    return norm(e.innerText !== undefined ? e.innerText : e.textContent);
  };
  const words = (k) => k.replace(/([a-z])([A-Z])/g, '$1 $2').replace(/[_\-.]+/g, ' ')
    .trim().toLowerCase();
  const labelKey = (s) => norm(s).toLowerCase().replace(/[:*]+$/, '').trim();
  const escape = (v) => (window.CSS && CSS.escape) ? CSS.escape(v) : v;
  const out = {};
  for (const key of keys) {
    const k = escape(key);
    let el = scope.querySelector(`[data-field="${k}"]`) || scope.querySelector(`[name="${k}"]`)
      || scope.querySelector(`[itemprop="${k}"]`);
    let value = el ? valueOf(el) : null;
    const wanted = words(key);
    if (value === null) {
      for (const label of scope.querySelectorAll('label')) {
        if (labelKey(label.innerText) === wanted && label.control) {
          value = valueOf(label.control); break;
        }
      }
    }
    if (value === null) {
      const cells = scope.querySelectorAll('dt, th, td, label, span, div, strong, b, p, li');
      for (const cell of cells) {
        const own = norm(cell.innerText);
        const lk = labelKey(own);
        if (lk === wanted) {
          const next = cell.nextElementSibling;
          if (next) { value = valueOf(next); break; }
        } else if (own.toLowerCase().startsWith(wanted + ':') && cell.children.length === 0) {
          value = norm(own.slice(wanted.length + 1)); break;
        }
      }
    }
    out[key] = value;
  }
  return out;
}
"""


def _schema_keys(schema: Any) -> list[str]:
    if isinstance(schema, str):
        schema = json.loads(schema)
    if isinstance(schema, Mapping):
        props = schema.get("properties")
        if isinstance(props, Mapping):
            return [str(k) for k in props]
        return [str(k) for k in schema if k not in ("type", "required", "$schema", "title")]
    if isinstance(schema, list):
        return [str(k) for k in schema]
    raise StepError("extract schema must be an object, a JSON schema or a list of keys")


def _apply_pattern(value: str | None, pattern: re.Pattern[str] | None) -> str | None:
    if value is None or pattern is None:
        return value
    m = pattern.search(value)
    if m is None:
        return None
    return m.group(1) if m.groups() else m.group(0)


async def _extract(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    timeout = _timeout(act, ctx)
    pattern = re.compile(act.pattern) if act.pattern else None
    value: Any
    if act.schema_ is not None:
        keys = _schema_keys(act.schema_)
        if act.selector:
            loc, _sel = _locator(page, act, ctx)
            if act.many:
                handles = await loc.element_handles()
                value = [await page.evaluate(_SCHEMA_JS, [h, keys]) for h in handles]
            else:
                handle = await loc.first.element_handle(timeout=timeout)
                value = await page.evaluate(_SCHEMA_JS, [handle, keys])
        else:
            value = await page.evaluate(_SCHEMA_JS, [None, keys])
        what = f"{len(value)} records" if isinstance(value, list) else f"{len(keys)} fields"
    elif act.selector:
        loc, selector = _locator(page, act, ctx)
        if act.many:
            if act.attribute:
                raw = await loc.evaluate_all("(els, a) => els.map(e => e.getAttribute(a))",
                                             act.attribute)
            else:
                raw = await loc.evaluate_all(
                    "els => els.map(e => (['INPUT','TEXTAREA','SELECT'].includes(e.tagName) ?"
                    " e.value : e.innerText).replace(/\\s+/g, ' ').trim())")
            value = [_apply_pattern(v, pattern) for v in raw]
            what = f"{len(value)} items from {selector}"
        else:
            first = loc.first
            if act.attribute:
                await first.wait_for(state="attached", timeout=timeout)
                value = await first.get_attribute(act.attribute, timeout=timeout)
            else:
                value = await _element_text(first, timeout)
            value = _apply_pattern(value, pattern)
            what = f"{act.attribute or 'text'} of {selector}"
    else:
        value = _apply_pattern(await _element_text(page.locator("body"), timeout), pattern)
        what = "page text"
    if act.variable:
        ctx.variables[act.variable] = value
    into = f" into {act.variable}" if act.variable else ""
    return _result(page, act, f"Extracted {what}{into}", value=value, variable=act.variable)


# ---- files


def confined_path(work_dir: Path, candidate: str) -> Path:
    """Resolve ``candidate`` inside ``work_dir`` (symlinks followed); refuse anything outside."""
    base = work_dir.resolve()
    path = Path(candidate)
    resolved = (path if path.is_absolute() else base / path).resolve()
    if not resolved.is_relative_to(base):
        raise StepError("refused: the file is outside the task's work directory",
                        code="path_outside_work_dir")
    return resolved


async def _upload(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    loc, selector = _locator(page, act, ctx)
    raw, _secret = _text(act.value, ctx)
    if not raw:
        raise StepError("upload needs a file (value) inside the work directory")
    names = [n.strip() for n in raw.split("\n") if n.strip()]
    paths = [confined_path(ctx.root, n) for n in names]
    for path in paths:
        if not path.is_file():
            raise StepError(f"no file {path.name} in the work directory", code="file_missing")
    await loc.set_input_files([str(p) for p in paths], timeout=_timeout(act, ctx))
    shown = ", ".join(p.name for p in paths)
    return _result(page, act, f"Uploaded {shown} to {selector}", path=str(paths[0]))


def _safe_name(name: str) -> str:
    base = Path(name.replace("\\", "/")).name
    base = re.sub(r"[^\w.\- ()\[\]]+", "_", base).strip(" .")
    return base[:150] or "download"


def _unique(directory: Path, name: str) -> Path:
    target = directory / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 1
    while target.exists():
        target = directory / f"{stem} ({n}){suffix}"
        n += 1
    return target


async def _download(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    timeout = _timeout(act, ctx)
    ctx.downloads_dir.mkdir(parents=True, exist_ok=True)
    async with page.expect_download(timeout=timeout) as info:
        if act.selector:
            loc, _selector = _locator(page, act, ctx)
            await loc.click(timeout=timeout)
        else:
            url, _secret = _text(act.url, ctx)
            if not url:
                raise StepError("download needs a selector to click or a url")
            verdict = await _check(url, ctx)
            if not verdict.allowed:
                raise Blocked(f"download from {url} blocked: {verdict.reason}",
                              category=verdict.category)
            try:
                await page.goto(url, timeout=timeout)
            except PlaywrightError as exc:
                if "Download is starting" not in str(exc):
                    raise
    download = await info.value
    failure = await download.failure()
    if failure:
        raise TransientError(f"download failed: {failure}")
    name = _safe_name(download.suggested_filename)
    target = confined_path(ctx.downloads_dir, str(_unique(ctx.downloads_dir, name)))
    await download.save_as(target)
    if act.variable:
        ctx.variables[act.variable] = str(target)
    return _result(page, act, f"Downloaded {target.name}", value=str(target),
                   variable=act.variable, path=str(target))


# ---- natural language


async def _act(page: Page, act: Action, ctx: ActionContext,
               cached: dict[str, Any] | None) -> ActionResult:
    if not act.instruction:
        raise StepError("act needs an instruction")
    # The template is parsed first and variables fill only the target words (a value such as
    # "Back to Basics Bakery" must not split the sentence); secrets only when acting.
    instruction, _ = substitute(act.instruction, ctx.variables, None)
    resolution: Resolution | None = None
    # A cached resolution was made for one filled-in instruction (e.g. one loop item's value);
    # replay it only for that same instruction, else ground again.
    if cached and cached.get("instruction") not in (None, instruction):
        cached = None
    if cached:
        replay = Resolution.from_dict({**cached, "source": "cache"})
        if replay.locator is None or await locator_from_cached(page, replay.locator).count() == 1:
            resolution = replay
        else:
            ctx.note("info", f"Cached locator for {instruction!r} no longer matches; grounding "
                             "again")
    if resolution is None:
        resolver = ctx.get_resolver()
        if isinstance(resolver, (GroundingResolver, ChainResolver)):
            outcome = await resolver.resolve(page, act.instruction, ctx.variables,
                                             secret_names=list(ctx.secrets))
        else:
            outcome = await resolver.resolve(page, instruction)
        if isinstance(outcome, Escalation):
            ctx.note("warn", f"Grounding escalated {instruction!r}: {outcome.reason}")
            raise NeedsHuman(f"{instruction}: {outcome.reason}", escalation=outcome.to_dict())
        resolution = outcome
        ctx.note("info", f"Grounded {instruction!r} to {resolution.description} "
                         f"({resolution.source}, confidence {resolution.confidence:.2f}"
                         f"{match_summary(resolution.match)})")
    return await perform_resolution(page, resolution, ctx, timeout_ms=_timeout(act, ctx))


async def perform_resolution(
    page: Page, resolution: Resolution, ctx: ActionContext, *, timeout_ms: float | None = None
) -> ActionResult:
    """Carry out a grounded (or cached) resolution; secrets are filled in only here."""
    timeout = ctx.default_timeout_ms if timeout_ms is None else timeout_ms
    value, secret = _text(resolution.value, ctx)
    what = resolution.description or "element"
    if resolution.action == "press":
        await page.keyboard.press(value)
        description = f"Pressed {value}"
    elif resolution.action == "back":
        await page.go_back(timeout=timeout)
        description = "Went back to the previous page"
    else:
        if resolution.locator is None:
            raise StepError(f"the resolution for {resolution.action} has no locator")
        loc = locator_from_cached(page, resolution.locator)
        point = await _top_most(page, loc, what, timeout)
        if resolution.action == "click":
            await _click_at(page, loc, point, timeout)
            description = f"Clicked {what}"
        elif resolution.action == "fill":
            await loc.fill(value, timeout=timeout)
            description = f"Filled {what} with {_shown(value, secret)}"
        elif resolution.action == "select":
            shown = f"{_shown(value, secret)} in {what}"
            if await loc.evaluate("(e) => e.tagName === 'SELECT'"):
                await _select_option(loc, value, timeout, shown)
            else:
                await _pick_option(page, loc, point, value, timeout, shown)
            description = f"Selected {shown}"
        elif resolution.action in ("check", "uncheck"):
            await _set_checked(page, loc, point, resolution.action == "check", timeout, what)
            description = f"{'Checked' if resolution.action == 'check' else 'Unchecked'} {what}"
        else:
            raise StepError(f"unknown resolved action {resolution.action!r}")
    return ActionResult(type="act", description=description, url=page.url,
                        resolution=templatize(resolution.to_dict(), ctx.secrets))


async def _top_most(page: Page, loc: Locator, what: str,
                   wait_ms: float) -> dict[str, Any]:
    """The hit test before an act: the element (or the label of a visually hidden checkbox)
    must be the top-most thing at its click point; a modal or overlay in the way escalates."""
    await loc.wait_for(state="attached", timeout=wait_ms)
    deadline = time.monotonic() + min(wait_ms, 3000.0) / 1000
    while True:
        point = await hit_test(loc)
        if point["state"] == "ok" or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    if point["state"] != "ok":
        by = point.get("by") or "another element"
        raise NeedsHuman(f"{what} is not the top-most element at its click point "
                         f"({point['state']}, {by} is in the way)",
                         escalation={"reason": "hit test failed", "candidates": []})
    return point


async def _click_at(page: Page, loc: Locator, point: dict[str, Any], wait_ms: float) -> None:
    if point.get("via") == "self":
        await loc.click(timeout=wait_ms)
    else:  # through the visible label / custom control of a hidden input
        await page.mouse.click(point["x"], point["y"])


async def _set_checked(page: Page, loc: Locator, point: dict[str, Any], wanted: bool,
                       wait_ms: float, what: str) -> None:
    """check/uncheck that also works on switches and visually hidden inputs."""
    state = "(e) => e.tagName === 'INPUT' ? e.checked : (e.getAttribute('aria-checked') " \
            "=== 'true' || e.getAttribute('aria-pressed') === 'true')"
    if bool(await loc.evaluate(state)) == wanted:
        return
    await _click_at(page, loc, point, wait_ms)
    if not await _poll(lambda: _is(loc, state, wanted), min(wait_ms, 3000.0)):
        raise StepError(f"{what} did not become {'checked' if wanted else 'unchecked'}")


async def _is(loc: Locator, js: str, wanted: bool) -> bool:
    return bool(await loc.evaluate(js)) == wanted


async def _pick_option(page: Page, loc: Locator, point: dict[str, Any], value: str,
                       wait_ms: float, shown: str) -> None:
    """A custom (ARIA) combobox/listbox: open it, then click the option with that name."""
    pattern = re.compile(rf"^\W*{re.escape(value.strip())}\W*$", re.I)
    options = page.get_by_role("option", name=pattern).filter(visible=True)
    if await options.count() != 1:  # closed: open it first
        await _click_at(page, loc, point, wait_ms)
    found = await _poll(lambda: _count_is_one(options), min(wait_ms, 3000.0))
    if not found:
        await page.keyboard.press("Escape")
        raise NeedsHuman(f"no single option {shown}",
                         escalation={"reason": "option not found", "candidates": []})
    await options.click(timeout=wait_ms)


async def _count_is_one(loc: Locator) -> bool:
    return await loc.count() == 1


_HANDLERS: dict[str, Handler] = {
    "navigate": _navigate,
    "click": _click,
    "fill": _fill,
    "type": _fill,
    "select": _select,
    "check": _check_box,
    "uncheck": _check_box,
    "press": _press,
    "scroll": _scroll,
    "wait": _wait,
    "extract": _extract,
    "verify": _verify,
    "upload": _upload,
    "download": _download,
    "act": _act,
}
