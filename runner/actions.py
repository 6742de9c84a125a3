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

The error classes live in :mod:`runner.errors` (importable from here too); the page-level
helpers the actions share live beside this module: :mod:`runner.navigation` (``goto``),
:mod:`runner.keyboard` (typing), :mod:`runner.controls` (acting on one located element) and
:mod:`runner.extraction` (reading values off the page).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator, Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from pydantic import ValidationError

from aef.models import ACTION_TYPES, Action
from aef.placeholders import replace_placeholders
from aef.url_policy import GuardPolicy, Verdict, check_url
from runner.controls import click_at, pick_option, poll, select_option, set_checked, top_most
from runner.errors import (
    ActionError,
    Blocked,
    NeedsHuman,
    StepError,
    TransientError,
    VerificationFailed,
    first_line,
)
from runner.extraction import SCHEMA_JS, apply_pattern, element_text, schema_keys
from runner.flow import lookup
from runner.grounding import (
    ChainResolver,
    Escalation,
    GroundingResolver,
    Resolution,
    Resolver,
    build_resolver,
    locator_from_cached,
    match_summary,
)
from runner.keyboard import type_text
from runner.navigation import goto
from runner.redaction import MASK, Redactor, templatize
from runner.safety import BLOCK_HEADER, NetworkGuard

log = logging.getLogger("runner.actions")

DEFAULT_TIMEOUT_MS = 10_000.0
MAX_PLAIN_WAIT_MS = 60_000.0
_LOAD_STATES = ("load", "domcontentloaded", "networkidle", "commit")


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
    """(found, value): a variable named with dots as it is, else a dotted path into one."""
    if name in variables:
        return True, variables[name]
    try:
        return True, lookup(name, variables)
    except KeyError:
        return False, None


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


def _classify_timeout(exc: BaseException, ctx: ActionContext, *, navigation: bool) -> ActionError:
    message = first_line(exc)
    if navigation or ctx.attempt <= 1:
        return TransientError(message)
    return StepError(f"{message} (still failing on attempt {ctx.attempt})",
                     code="element_not_found")


def _classify_playwright(exc: PlaywrightError) -> ActionError:
    message = first_line(exc)
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
    await select_option(loc, value, _timeout(act, ctx), f"{_shown(value, secret)} in {selector}")
    return _result(page, act, f"Selected {_shown(value, secret)} in {selector}")


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


async def _verify(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    timeout = _timeout(act, ctx)
    checks: list[str] = []
    if act.url_contains:
        fragment, _secret = _text(act.url_contains, ctx)

        async def url_matches() -> bool:
            return fragment in page.url

        if not await poll(url_matches, timeout):
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
                last = await element_text(target, 1000)
            except PlaywrightError:
                return False
            if pattern is not None and not pattern.search(last):
                return False
            return not expected or expected in last

        if not await poll(matches, timeout):
            what = f"/{act.pattern}/" if pattern is not None else _shown(expected, secret)
            seen = last if len(last) <= 120 else last[:117] + "..."
            raise VerificationFailed(f"text {seen!r} does not match {what}")
        checks.append("text matches")
    if not checks:
        raise StepError("verify needs urlContains, selector, pattern or value")
    return _result(page, act, "Verified: " + ", ".join(checks))


# ---- extraction


async def _extract(page: Page, act: Action, ctx: ActionContext, _: Any) -> ActionResult:
    timeout = _timeout(act, ctx)
    pattern = re.compile(act.pattern) if act.pattern else None
    value: Any
    if act.schema_ is not None:
        keys = schema_keys(act.schema_)
        if act.selector:
            loc, _sel = _locator(page, act, ctx)
            if act.many:
                handles = await loc.element_handles()
                value = [await page.evaluate(SCHEMA_JS, [h, keys]) for h in handles]
            else:
                handle = await loc.first.element_handle(timeout=timeout)
                value = await page.evaluate(SCHEMA_JS, [handle, keys])
        else:
            value = await page.evaluate(SCHEMA_JS, [None, keys])
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
            value = [apply_pattern(v, pattern) for v in raw]
            what = f"{len(value)} items from {selector}"
        else:
            first = loc.first
            if act.attribute:
                await first.wait_for(state="attached", timeout=timeout)
                value = await first.get_attribute(act.attribute, timeout=timeout)
            else:
                value = await element_text(first, timeout)
            value = apply_pattern(value, pattern)
            what = f"{act.attribute or 'text'} of {selector}"
    else:
        value = apply_pattern(await element_text(page.locator("body"), timeout), pattern)
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
        point = await top_most(page, loc, what, timeout)
        if resolution.action == "click":
            await click_at(page, loc, point, timeout)
            description = f"Clicked {what}"
        elif resolution.action == "fill":
            await loc.fill(value, timeout=timeout)
            description = f"Filled {what} with {_shown(value, secret)}"
        elif resolution.action == "select":
            shown = f"{_shown(value, secret)} in {what}"
            if await loc.evaluate("(e) => e.tagName === 'SELECT'"):
                await select_option(loc, value, timeout, shown)
            else:
                await pick_option(page, loc, point, value, timeout, shown)
            description = f"Selected {shown}"
        elif resolution.action in ("check", "uncheck"):
            await set_checked(page, loc, point, resolution.action == "check", timeout, what)
            description = f"{'Checked' if resolution.action == 'check' else 'Unchecked'} {what}"
        else:
            raise StepError(f"unknown resolved action {resolution.action!r}")
    return ActionResult(type="act", description=description, url=page.url,
                        resolution=templatize(resolution.to_dict(), ctx.secrets))


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
