"""Checkpoint preview: what the steps a checkpoint covers are about to do, resolved on the live
page without doing any of it, so a person approves the real values and elements.

Each action is listed with its kind, its target as grounded now (role and accessible name,
selector, whether exactly one element matches) and its concrete value: variables filled in
(the loop item's too), secrets shown as "••••" and never read into the preview. Targets are
found with the same means the action will use (a CSS selector, or the grounding resolver for
an `act`); only reads happen (counts, accessibility snapshot, bounding boxes). A target that
appears only after an earlier action of the unit (a form opened by its first click) is
`resolved: false` here; approving then runs the step's normal escalation.

The screenshot outlines the resolved targets with a DOM overlay that is removed right after
the capture (password fields and secrets are masked as in every screenshot).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Locator, Page

from aef.models import Action, PlanStep
from aef.plan import nested
from runner.actions import substitute
from runner.browser import capture_jpeg
from runner.grounding import Escalation, Resolver, locator_from_cached
from runner.instructions import parse_instruction
from runner.redaction import Redactor

log = logging.getLogger("aef.runner.preview")

PREVIEW_MASK = "\u2022" * 4  # a secret in a preview: never its value, never its length
OVERLAY_ID = "aef-preview-overlay"
OUTLINE_COLOR = "#ff7a00"  # not Playwright's magenta mask colour, so the two never mix
OUTLINE_WIDTH = 4
NAME_LIMIT = 120
_TARGETED = frozenset({"click", "fill", "type", "select", "check", "uncheck", "press", "scroll",
                       "wait", "extract", "verify", "upload", "download"})
_ARIA_LINE = re.compile(r'^\s*-\s*([\w-]+)(?:\s+"((?:[^"\\]|\\.)*)")?')

_DRAW_JS = """
([id, color, width, boxes]) => {
  document.getElementById(id)?.remove();
  const root = document.createElement('div');
  root.id = id;
  root.setAttribute('aria-hidden', 'true');
  root.style.cssText = 'position:fixed;inset:0;pointer-events:none;z-index:2147483647;';
  boxes.forEach(([n, b]) => {
    const outline = document.createElement('div');
    outline.dataset.aefPreviewOutline = String(n);
    outline.style.cssText = `position:fixed;box-sizing:border-box;left:${b.x - width}px;` +
      `top:${b.y - width}px;width:${b.width + 2 * width}px;height:${b.height + 2 * width}px;` +
      `border:${width}px solid ${color};`;
    const tag = document.createElement('span');
    tag.textContent = String(n);
    tag.style.cssText = `position:absolute;left:-${width}px;top:-${width + 16}px;` +
      `background:${color};color:#fff;font:bold 12px sans-serif;padding:0 4px;`;
    outline.appendChild(tag);
    root.appendChild(outline);
  });
  document.documentElement.appendChild(root);
}
"""
_REMOVE_JS = "(id) => document.getElementById(id)?.remove()"


@dataclass
class Preview:
    """The wire `preview` (`as_json`) plus the outline boxes drawn on its screenshot."""

    url: str
    actions: list[dict[str, Any]] = field(default_factory=list)
    boxes: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    screenshot: str | None = None
    screenshot_key: str | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"url": self.url, "screenshot": self.screenshot,
                                "actions": self.actions}
        if self.screenshot_key:
            body["screenshotKey"] = self.screenshot_key  # server-side only (re-signing)
        return body


def covered_steps(plan: Iterable[PlanStep], first: PlanStep) -> list[PlanStep]:
    """The steps the checkpoint on `first` authorizes, in run order (`covers`)."""
    wanted = list(first.checkpoint.covers) if first.checkpoint and first.checkpoint.covers \
        else [first.id]
    if first.id not in wanted:
        wanted.insert(0, first.id)
    found: dict[str, PlanStep] = {}
    stack = list(plan)
    while stack:
        step = stack.pop()
        found.setdefault(step.id, step)
        stack.extend(nested(step))
    return [found[step_id] for step_id in wanted if step_id in found]


def _leaf_actions(step: PlanStep) -> Iterable[tuple[str, Action]]:
    """The actions a step will perform (a container: its body's, in order)."""
    if step.actions:
        yield from ((step.id, action) for action in step.actions)
    elif step.instruction and step.kind in ("task",) and step.method != "manual":
        yield step.id, Action(type="act", instruction=step.instruction)
    for child in step.children:
        yield from _leaf_actions(child)


class _Filler:
    """Fills placeholders for showing: variables win (as in the runner), secrets are masked,
    a name nothing sets yet (an earlier action of the unit extracts it) stays `{{name}}`."""

    def __init__(self, variables: Mapping[str, Any], secrets: Mapping[str, str]) -> None:
        self.raw = variables
        self.variables = {**{name: PREVIEW_MASK for name in secrets}, **variables}
        self.secrets = secrets
        self.redactor = Redactor(secrets)

    def fill(self, text: str | None) -> str | None:
        if text is None:
            return None
        filled, _ = substitute(str(text), self.variables, None)
        return self.redactor.redact(filled).replace("\u2022" * 6, PREVIEW_MASK)

    def for_grounding(self, text: str) -> str:
        """Variables only: the resolver works on the template of a secret, as when acting."""
        filled, _ = substitute(text, self.raw, None)
        return filled

    def credential(self, name: str) -> str | None:
        if name in self.secrets:
            return PREVIEW_MASK
        return self.fill("{{" + name + "}}")


def _selector_text(spec: Mapping[str, Any] | None) -> str | None:
    """A readable selector for a grounded locator spec (Playwright selector syntax)."""
    if not spec:
        return None
    strategy = spec.get("strategy")
    if strategy == "css":
        return str(spec.get("selector"))
    if strategy == "role":
        return f'role={spec.get("role")}[name="{spec.get("name", "")}"]'
    if strategy == "testid":
        return f'[data-testid="{spec.get("value")}"]'
    return f'{strategy}="{spec.get("text", "")}"'


async def _describe_element(loc: Locator) -> tuple[bool, str | None, str | None,
                                                    dict[str, float] | None]:
    """(exactly one match, role, accessible name, viewport box): reads only."""
    try:
        if await loc.count() != 1:
            return False, None, None, None
        role = name = None
        try:
            snapshot = await loc.aria_snapshot(timeout=2000)
            match = _ARIA_LINE.match(snapshot.splitlines()[0]) if snapshot else None
            if match:
                role, name = match.group(1), match.group(2)
                if name and len(name) > NAME_LIMIT:  # a row's name is all of its text
                    name = name[:NAME_LIMIT - 3] + "..."
        except Exception as exc:  # an element outside the accessibility tree
            log.debug("no aria snapshot: %s", type(exc).__name__)
        box = await loc.bounding_box(timeout=2000)
        if box is None:
            return True, role, name, None
        return True, role, name, {k: float(box[k]) for k in ("x", "y", "width", "height")}
    except Exception as exc:  # a navigation in progress, a detached frame
        log.debug("preview target not read: %s", type(exc).__name__)
        return False, None, None, None


async def _target(page: Page, action: Action, filler: _Filler, resolver: Resolver
                  ) -> tuple[dict[str, Any] | None, str | None, dict[str, float] | None]:
    """(target, value, box) of one action as it would run now."""
    if action.type == "act" and action.instruction:
        instruction = filler.for_grounding(action.instruction)
        outcome = await resolver.resolve(page, instruction)
        if isinstance(outcome, Escalation):
            parsed = parse_instruction(instruction)
            value = filler.fill(parsed.value) if parsed and parsed.value else None
            if action.credential_field:
                value = filler.credential(action.credential_field)
            return ({"role": None, "name": None, "selector": None, "resolved": False,
                     "box": None}, value, None)
        value = filler.fill(outcome.value)
        if action.credential_field:
            value = filler.credential(action.credential_field)
        if outcome.locator is None:  # a page-level key press
            return None, value, None
        loc = locator_from_cached(page, outcome.locator)
        resolved, role, name, box = await _describe_element(loc)
        spec = outcome.locator
        role = role or (spec.get("role") if spec.get("strategy") == "role" else None)
        name = name if name is not None else (spec.get("name") or spec.get("text"))
        return ({"role": role, "name": filler.fill(name) if name else None,
                 "selector": filler.fill(_selector_text(spec)), "resolved": resolved,
                 "box": None}, value, box)
    if action.type == "navigate":
        return None, filler.fill(action.url or action.value), None
    value = (filler.credential(action.credential_field) if action.credential_field
             else filler.fill(action.key if action.type == "press" else action.value))
    if action.type not in _TARGETED or not action.selector:
        return None, value, None
    selector = filler.fill(action.selector) or ""
    resolved, role, name, box = (False, None, None, None)
    if "{{" not in selector and "\u2022" not in selector:
        resolved, role, name, box = await _describe_element(page.locator(selector))
    return ({"role": role, "name": filler.fill(name) if name else None, "selector": selector,
             "resolved": resolved, "box": None}, value, box)


def _description(action: Action, filler: _Filler) -> str:
    text = action.instruction or " ".join(
        x for x in (action.type, action.selector or action.url or action.key or "") if x)
    return (filler.fill(text) or action.type)[:300]


async def build_preview(page: Page, steps: Sequence[PlanStep], *,
                        variables: Mapping[str, Any], secrets: Mapping[str, str],
                        resolver: Resolver) -> Preview:
    """Every action of `steps` with its target and value, resolved on `page` now."""
    filler = _Filler(variables, secrets)
    preview = Preview(url=filler.fill(page.url) or "")
    for step in steps:
        for step_id, action in _leaf_actions(step):
            try:
                target, value, box = await _target(page, action, filler, resolver)
            except Exception as exc:  # the preview must never cost the run
                log.warning("preview of a %s action failed: %s", action.type,
                            type(exc).__name__)
                target, value, box = None, None, None
            preview.actions.append({"stepId": step_id, "kind": action.type,
                                    "description": _description(action, filler),
                                    "target": target, "value": value})
            if box is not None and target is not None and target["resolved"]:
                number = len(preview.actions)
                target["box"] = {k: round(float(v), 1) for k, v in box.items()}
                preview.boxes.append((number, box))
    return preview


async def outlined_screenshot(page: Page, preview: Preview, *,
                              secrets: Iterable[str] = ()) -> bytes | None:
    """A JPEG of the page with each resolved target outlined and numbered by its action's
    place in the list; the overlay is removed again whatever happens."""
    try:
        await page.evaluate(_DRAW_JS, [OVERLAY_ID, OUTLINE_COLOR, OUTLINE_WIDTH,
                                       [[n, box] for n, box in preview.boxes]])
    except Exception as exc:
        log.warning("preview overlay not drawn: %s", type(exc).__name__)
    try:
        return await capture_jpeg(page, secrets=secrets, quality=85)
    finally:
        try:
            await page.evaluate(_REMOVE_JS, OVERLAY_ID)
        except Exception as exc:
            log.warning("preview overlay not removed: %s", type(exc).__name__)
