"""Grounding: map a natural-language instruction to one element on the page, or escalate.

"Never guess" is the rule; a wrong act (an email to the wrong person, a record written into the
wrong form) is the worst thing the product can do, so precision comes before recall.

**Parsing** of the instruction into an action, targets and hints is
:mod:`runner.instructions`.

**Candidates.** One scan of the page lists every element a person could act on with all the
names a person might use for it: accessible name, visible text, ``<label>`` (also one without
``for=``), placeholder, title/tooltip, the column header of a grid cell. Names are normalized:
case, punctuation, "(required)"/"(optional)", a trailing shortcut hint ("Discard draft
(Ctrl-Shift-D)"), and a combined label ("Email or mobile phone number", "Country/Region") is
also read as its alternatives.

**Modal scoping.** When a modal dialog is open (``role=dialog``/``alertdialog`` with
``aria-modal=true``, a ``<dialog>`` shown modally, a dialog while the app root is
``aria-hidden``/``inert``, or a dialog under a full-screen backdrop), only its content is a
candidate, for every kind of lookup (role, label, placeholder, title, text).

**Unambiguous.** Each element keeps its best score. An *exact* match (normalized name equal to
the target) scores 0.97-1.0; anything else is *partial* (an alternative of a combined label
0.9, the target inside the name 0.5-0.85, the name inside the target 0.5-0.8). The top must
clear ``settings.grounding_threshold`` (0.75) and beat every other plausible candidate (score
>= 0.4): by ``AMBIGUITY_MARGIN`` (0.1) when it is exact, by ``PARTIAL_MARGIN`` (0.25) when it is
partial. Two identical "Delete" buttons therefore escalate, unless an ordinal ("the first") or
a context (the row, the region) names one of them; an ordinal counts rows only within the one
list of the page's content. A lone destructive verb ("Delete") never matches the leading words
of a longer name ("Delete account"). Hidden elements are never candidates; disabled or covered
look-alikes count as rivals but are never acted on.

**Hit test.** An element must be the top-most thing at its click point (itself, a child, or
its label). Covered elements are not candidates, and :func:`runner.actions.perform_resolution`
repeats the test right before every act (after scrolling it into view) and escalates when
something else would receive the click. A visually hidden checkbox/radio is acted on through
its visible label or custom control.

A :class:`Resolution` carries a JSON locator spec (e.g. ``{"strategy": "role", "role": "button",
"name": "Next", "exact": true}``) verified to match exactly the chosen element, so the engine
can cache it per step and replay it with :func:`locator_from_cached`; and ``match`` records what
was chosen and why (role, name, how, score, runner-up and margin) for the audit trail.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from playwright.async_api import Locator, Page

from aef.placeholders import replace_placeholders
from runner.instructions import (
    DEFAULT_ROLES,
    FILLER_WORDS,
    KIND_FOR_ACTION,
    QUANTIFIERS,
    TYPE_HINTS,
    ParsedInstruction,
    parse_instruction,
)

log = logging.getLogger("runner.grounding")

AMBIGUITY_MARGIN = 0.1
PARTIAL_MARGIN = 0.25
PLAUSIBLE = 0.4
EXACT = 0.97
ROLE_MISMATCH_PENALTY = 0.15
MAX_CANDIDATES_REPORTED = 5

_SCAN_JS = (Path(__file__).with_name("grounding_scan.js")).read_text()
_INFO_JS = f"(els) => ({_SCAN_JS})({{mode: 'info', els}})"
_HIT_JS = f"(el) => ({_SCAN_JS})({{mode: 'hit', el}})"

# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Resolution:
    """An unambiguous match: what to do, on which element, how sure we are."""

    action: str  # click | fill | select | check | uncheck | press | back
    locator: dict[str, Any] | None  # None only for a page-level key press / go back
    value: str | None = None  # text to type / option to select / key; {{placeholders}} kept
    confidence: float = 1.0
    source: str = "grounding"  # grounding | llm | cache
    description: str = ""  # e.g. 'button "Next"' (never contains a substituted secret)
    instruction: str = ""
    match: dict[str, Any] | None = None  # role, name, how, score, runnerUp, margin

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Resolution:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Escalation:
    """No safe match: the engine turns the step into a manual one with this reason."""

    reason: str
    instruction: str = ""
    candidates: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "instruction": self.instruction,
                "candidates": list(self.candidates)}


@runtime_checkable
class Resolver(Protocol):
    """Anything that can ground an instruction on a page (built-in, LLM, chains)."""

    async def resolve(self, page: Page, instruction: str) -> Resolution | Escalation: ...


# --------------------------------------------------------------------------- matching

_SHORTCUT = re.compile(r"\s*[(\[][^()\[\]]*(?:ctrl|cmd|\u2318|shift|alt|\u2325|\u21e7|meta|"
                       r"enter|esc)[^()\[\]]*[)\]]\s*$"
                       r"|\s+(?:\u2318|\u2325|\u21e7|ctrl[+-]|cmd[+-]|alt[+-])\S*$", re.I)
_DECOR = re.compile(r"\((?:required|optional)\)|\*|\u2022", re.I)
_COMBINED = re.compile(r"\s+or\s+|\s*/\s*|\s+and/or\s+", re.I)
_NAME_WEIGHT = {"name": 1.0, "label": 0.98, "text": 0.97, "column": 0.97, "placeholder": 0.95,
                "title": 0.95, "tooltip": 0.95}
# Words that say what kind of thing a target is, not its name: "the #random channel".
_KIND_WORDS = {"channel", "folder", "page", "project", "repository", "repo", "file", "document",
               "label", "tag", "filter", "view", "board", "workspace", "team", "space",
               "section", "category", "column", "stage", "status", "menu", "setting", "entry",
               "record", "step", "chip", "pill"}
# What an icon looks like → what its control is named: "the pencil icon" is "Edit".
_ICON_WORDS = {"pencil": ("Edit",), "trash": ("Delete", "Remove"), "bin": ("Delete", "Remove"),
               "trash can": ("Delete", "Remove"), "gear": ("Settings",), "cog": ("Settings",),
               "plus": ("Add", "Create", "New"), "x": ("Close", "Remove"),
               "cross": ("Close", "Remove"), "magnifying glass": ("Search",),
               "magnifier": ("Search",), "bell": ("Notifications",),
               "three dots": ("More", "More options", "More actions"),
               "kebab": ("More", "More options", "More actions"),
               "ellipsis": ("More", "More options", "More actions"),
               "paperclip": ("Attach",), "paper clip": ("Attach",), "hamburger": ("Menu",),
               "question mark": ("Help",), "heart": ("Like",), "eye": ("Show",)}
_DESTRUCTIVE = {"delete", "remove", "send", "pay", "submit", "cancel", "discard", "archive",
                "unsubscribe", "reject", "decline", "close", "clear", "reset", "revoke",
                "disable", "deactivate", "refund", "void", "transfer", "publish", "merge",
                "approve", "confirm", "sign", "buy", "purchase", "order", "leave", "block"}
_PROMPT_VERBS = {"add", "enter", "type", "choose", "select", "pick", "write", "insert",
                 "provide", "set"}
_UI_NOUNS = {"dialog", "modal", "window", "popup", "panel", "sidebar", "drawer", "menu",
             "banner", "overlay", "tooltip"}
_LEAF_ROLES = {"button", "link", "menuitem", "menuitemcheckbox", "menuitemradio", "tab",
               "option", "checkbox", "radio", "switch", "combobox", "textbox", "searchbox",
               "spinbutton"}


def _stem(word: str) -> str:
    """Plurals only ("files" = "file"); tenses are different controls ("Snoozed" folder)."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
        if word.endswith(("che", "she", "xe", "sse")):
            word = word[:-1]
    return word


def _past(word: str) -> str:
    """ "starred" → "star": only to read state names such as "Not starred"."""
    if word.endswith("ed") and len(word) > 4:
        word = word[:-2]
        if len(word) > 2 and word[-1] == word[-2]:
            word = word[:-1]
    return word


_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_DROPPED = {"a", "an", "the", "this"}
_SYNONYMS = [(re.compile(r"\b(?:log\s*in|login|signin)\b"), "sign in"),
             (re.compile(r"\b(?:log\s*out|logout|signout)\b"), "sign out"),
             (re.compile(r"\be-mail\b"), "email")]
_COUNT = re.compile(r"[\s,(]*\d[\d,.]*\+?\s*(?:new|unread)?\s*(?:messages?|items?)?[\s,)]*$",
                    re.I)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower().replace("'s ", " ").replace("\u2019s ", " "))


def _key(text: str, stem: bool = True) -> list[str]:
    text = _INVISIBLE.sub("", text)
    text = _DECOR.sub(" ", _SHORTCUT.sub("", text)).lower()
    for pattern, repl in _SYNONYMS:
        text = pattern.sub(repl, text)
    return [_stem(w) if stem else w for w in _words(text) if w not in _DROPPED]


def _contains(hay: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(hay[i:i + n] == needle for i in range(len(hay) - n + 1))


def _score(target: str, name: str, field: bool = False) -> tuple[float, str]:
    """How well a name fits the target: (score, kind of match). See the module docstring."""
    t, n = _key(target), _key(name)
    if not t or not n:
        return 0.0, ""
    if t == n:
        if _key(target, stem=False) != _key(name, stem=False):
            return 0.9, "same words but for a plural"
        return 1.0, "exact"
    counted = _key(_COUNT.sub("", name))
    if counted and counted == t:  # "Issues 12", "Promotions, 2 new messages"
        return 0.97, "exact (ignoring the count)"
    if field and len(n) > 1 and n[0] in _PROMPT_VERBS and n[1:] == t:  # "Add title" field
        return 0.95, "exact (a prompt)"
    if len(n) > 1 and n[-1] in _UI_NOUNS and n[:-1] == t:  # "Close dialog" is "Close"
        return 0.97, "exact (ignoring the word " + n[-1] + ")"
    if n[0] == "not" and len(n) > 1 and [_past(w) for w in n[1:]] == t:  # "Not starred"
        return 0.9, "state name"
    parts = [p for p in _COMBINED.split(_SHORTCUT.sub("", _INVISIBLE.sub("", name)))
             if p.strip()]
    if len(parts) > 1 and any(_key(p) == t for p in parts):
        return 0.9, "combined label"
    t_len, n_len = len(" ".join(t)), len(" ".join(n))
    if n[:len(t)] == t and len(n) - len(t) <= 3 and not (len(t) == 1 and t[0] in _DESTRUCTIVE):
        # the name starts with the target ("To" → "To recipients"); never for a lone
        # destructive verb: "Delete" must not become "Delete account"
        return max(0.76, 0.5 + 0.35 * t_len / n_len), "partial (leading words)"
    if _contains(n, t):
        return 0.5 + 0.35 * min(1.0, t_len / n_len), "partial"
    content = [w for w in n if w not in FILLER_WORDS]
    if content and _contains(t, n):
        return 0.5 + 0.35 * min(1.0, n_len / t_len), "partial (name inside target)"
    if set(t) <= set(n):
        return 0.4 + 0.2 * min(1.0, t_len / n_len), "words"
    return 0.0, ""


def _has_words(hay: str, phrase: str) -> bool:
    words = set(_key(hay))
    return bool(_key(phrase)) and all(w in words for w in _key(phrase))


@dataclass
class Candidate:
    path: str
    info: dict[str, Any]
    score: float = 0.0
    how: str = ""  # e.g. "label exact"
    exact: bool = False
    specs: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def describe(self) -> str:
        role = self.info.get("role") or self.info.get("tag") or "element"
        name = self.info.get("name") or ""
        return f'{role} "{name[:80]}"' if name else role


def locator_from_cached(page: Page, spec: dict[str, Any]) -> Locator:
    """Rebuild a Playwright locator from a serialized spec (see module docstring)."""
    strategy = spec.get("strategy")
    exact = bool(spec.get("exact", False))
    flags = re.I if spec.get("ignoreCase", True) else 0

    def text_arg(key: str) -> str | re.Pattern[str]:
        raw = str(spec.get(key, ""))
        return re.compile(raw, flags) if spec.get("regex") else raw

    loc: Locator
    if strategy == "role":
        loc = page.get_by_role(spec["role"], name=text_arg("name"),
                               exact=None if spec.get("regex") else exact)
    elif strategy == "label":
        loc = page.get_by_label(text_arg("text"), exact=None if spec.get("regex") else exact)
    elif strategy == "placeholder":
        loc = page.get_by_placeholder(text_arg("text"),
                                      exact=None if spec.get("regex") else exact)
    elif strategy == "text":
        loc = page.get_by_text(text_arg("text"), exact=None if spec.get("regex") else exact)
    elif strategy == "title":
        loc = page.get_by_title(text_arg("text"), exact=None if spec.get("regex") else exact)
    elif strategy == "testid":
        loc = page.get_by_test_id(str(spec["value"]))
    elif strategy == "css":
        loc = page.locator(str(spec["selector"]))
    else:
        raise ValueError(f"unknown locator strategy {strategy!r}")
    if spec.get("visible"):
        loc = loc.filter(visible=True)
    return loc


def _fill_in(text: str, variables: Mapping[str, Any]) -> str:
    def value_of(name: str) -> str | None:
        value = variables.get(name)
        return None if value is None or isinstance(value, (dict, list)) else str(value)
    return replace_placeholders(text, value_of)


def _bind_description(value: str, names: Sequence[str]) -> str | None:
    """ "the company name" → "{{company_name}}" when such a variable exists."""
    wanted = [w for w in _words(re.sub(r"^\w+\s+", "", value)) if w not in ("s", "value")]
    for name in names:
        spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
        if sorted(_words(spaced.replace("_", " ").replace("-", " ").replace(".", " "))) == \
                sorted(wanted):
            return "{{" + name + "}}"
    return None


class GroundingResolver:
    """The built-in resolver: one scan of the page, names scored in Python; never guesses."""

    def __init__(self, threshold: float = 0.75, *, margin: float = AMBIGUITY_MARGIN,
                 partial_margin: float = PARTIAL_MARGIN) -> None:
        self.threshold = threshold
        self.margin = margin
        self.partial_margin = partial_margin

    @classmethod
    def from_settings(cls, settings: Any) -> GroundingResolver:
        return cls(float(getattr(settings, "grounding_threshold", 0.75)))

    async def resolve(self, page: Page, instruction: str,
                      variables: Mapping[str, Any] | None = None, *,
                      secret_names: Sequence[str] = ()) -> Resolution | Escalation:
        """Ground ``instruction`` (a template: ``{{name}}`` kept; ``variables`` fill the target
        words after parsing, never the value; a described value may bind to a variable or to
        one of ``secret_names``)."""
        variables = variables or {}
        filled = _fill_in(instruction, variables)
        parsed = parse_instruction(instruction)
        if parsed is None:
            return Escalation("the instruction is not a single element action the grounding "
                              "understands", filled)
        if parsed.action == "press":
            return Resolution("press", None, parsed.value, 1.0, description=f"key {parsed.value}",
                              instruction=filled)
        if parsed.action == "back":
            return Resolution("back", None, None, 1.0, description="the previous page",
                              instruction=filled)
        value = parsed.value
        if parsed.describes and value is not None:
            bound = _bind_description(value, [*variables, *secret_names])
            if bound is None:
                return Escalation(f"{value!r} describes a value instead of giving it, and no "
                                  "{{variable}} matches it", filled)
            value = bound
        if not parsed.targets and not parsed.type_hints and not parsed.item:
            return Escalation("no target element named in the instruction", filled)
        conditional = not parsed.quoted and any(
            QUANTIFIERS.search(t) for t in (*parsed.targets, *parsed.qualifiers))
        scan = await self._scan(page)
        first: Resolution | Escalation | None = None
        for reading in (parsed, *parsed.alternatives):
            reading = self._substituted(reading, variables)
            found = self._candidates(scan, reading)
            result = await self._decide(page, reading, filled, found, value)
            if isinstance(result, Resolution) and conditional and "exact" not in str(
                    (result.match or {}).get("how")):
                # "each", "any", "the relevant ...": only a control named so may act
                return Escalation("the instruction picks an element by a condition; that needs "
                                  "a person or an explicit selector", filled)
            if isinstance(result, Resolution):
                return result
            if first is None:
                first = result
            if found and any(c.score >= self.threshold for c in found.values()
                             if c.info["visible"]):
                return result  # a confident but ambiguous/blocked reading: do not look further
        if parsed.or_click:
            as_click = ParsedInstruction("click", parsed.targets, parsed.quoted, (), None,
                                         parsed.type_hints)
            found = self._candidates(scan, as_click)
            result = await self._decide(page, as_click, filled, found, None)
            if isinstance(result, Resolution) or not isinstance(first, Escalation) \
                    or "no visible" in first.reason:
                return result
        assert first is not None
        return first

    @staticmethod
    def _substituted(reading: ParsedInstruction,
                     variables: Mapping[str, Any]) -> ParsedInstruction:
        if not variables:
            return reading
        return replace(reading, targets=tuple(_fill_in(t, variables) for t in reading.targets),
                       context=tuple(_fill_in(t, variables) for t in reading.context),
                       qualifiers=tuple(_fill_in(t, variables) for t in reading.qualifiers))

    async def _scan(self, page: Page) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await page.evaluate(f"({_SCAN_JS})(null)")
            return result
        except Exception as exc:  # navigation in progress, closed page
            log.debug("scan failed: %s", exc)
            return {"modal": None, "elements": []}

    # ---- candidates

    def _candidates(self, scan: dict[str, Any],
                    parsed: ParsedInstruction) -> dict[str, Candidate]:
        elements: list[dict[str, Any]] = scan["elements"]
        if parsed.item:
            return self._items(elements, parsed)
        action = parsed.action
        hinted = set(parsed.roles)
        allowed = set(parsed.roles) | set(DEFAULT_ROLES[action])
        if action == "click" and not ({"gridcell", "cell"} & hinted) and not parsed.context:
            allowed -= {"gridcell", "cell", "row"}
        needed_kind = KIND_FOR_ACTION.get(action)
        found: dict[str, Candidate] = {}
        t_words = {w for t in parsed.targets for w in _words(t)} - FILLER_WORDS
        for el in elements:
            role = el["role"] or ""
            if needed_kind and el["kind"] != needed_kind:
                editable_combo = el["kind"] == "fillable" and role == "combobox"
                if not ((action == "select" and editable_combo)
                        or (action == "fill" and el["kind"] == "select")):
                    continue
            field_click = action == "click" and el["kind"] in ("fillable", "select")
            if role and role not in allowed and not field_click and not (
                    action == "click" and el["interactive"]
                    and role in ("listitem", "article", "img", "treeitem")):
                continue
            if action == "click" and not role and not el["interactive"]:
                continue
            if parsed.context and not all(
                _has_words(" ".join([el["row"], *el["regions"]]), c) for c in parsed.context
            ):
                continue
            best, how = 0.0, ""
            for target in parsed.targets:
                variants = [(target, 1.0)]
                stripped = " ".join(w for w in target.split() if w.lower() not in FILLER_WORDS)
                if stripped and stripped.lower() != target.lower():
                    variants.append((stripped, 0.9))
                words = target.split()
                if len(words) > 1 and words[-1].lower() in _KIND_WORDS:
                    variants.append((" ".join(words[:-1]), 0.95))
                if parsed.icon:
                    variants += [(name, 1.0) for name in _ICON_WORDS.get(target.lower(), ())]
                names = list(el["names"])
                if el["regions"] and el["name"]:
                    names.append((f"{el['name']} {el['regions'][0]}", "label"))
                for text, factor in variants:
                    for name, source in names:
                        if source == "column" and role not in ("cell", "gridcell"):
                            continue
                        score, kind = _score(text, name, el["kind"] in ("fillable", "select"))
                        score *= factor * _NAME_WEIGHT.get(source, 0.9)
                        if (hinted and role not in hinted and target != parsed.literal) or (
                                field_click and not hinted):
                            score -= ROLE_MISMATCH_PENALTY
                        if score > best:
                            best, how = score, f"{source} {kind}"
            for css in parsed.type_hints if action != "click" else ():
                tag_type = css.split("=")[1].rstrip("]")
                searchish = tag_type == "search" and (role == "searchbox" or any(
                    _key(name)[:1] == ["search"] for name, _ in el["names"]))
                if (el["tag"] == "input" and el["type"] == tag_type) or searchish:
                    hint_words = {w for w, c in TYPE_HINTS.items() if c == css}
                    score = 0.85 if not (t_words - hint_words) else 0.6
                    if best >= PLAUSIBLE:  # the name and the input type agree
                        best, how = max(best, score) + 0.1, how + f" + input type {tag_type}"
                    elif score > best:
                        best, how = score, f"input type {tag_type}"
            if action == "select" and parsed.value and not parsed.roles and el["options"] and (
                not parsed.targets or parsed.targets == (parsed.value,)
            ):
                wanted = parsed.value.strip().lower()
                if any(wanted in (lab.lower(), val.lower()) for lab, val in el["options"]):
                    best, how = max(best, 0.85), "select containing the option"
            if best <= 0 or (field_click and "exact" not in how):
                continue
            if action == "click" and not el["interactive"]:
                best = min(best, 0.5)
            found[el["path"]] = Candidate(el["path"], el, best, how, exact="exact" in how)
        return self._merge_nested(found)

    @staticmethod
    def _merge_nested(found: dict[str, Candidate]) -> dict[str, Candidate]:
        """A span inside a button is the button: keep the control, with the better score."""
        leaves = sorted((c for c in found.values() if c.info["role"] in _LEAF_ROLES),
                        key=lambda c: len(c.path))
        for cand in sorted(found.values(), key=lambda c: len(c.path), reverse=True):
            for outer in leaves:
                if outer is not cand and cand.path.startswith(outer.path + " > "):
                    if cand.score > outer.score:
                        outer.score, outer.how, outer.exact = cand.score, cand.how, cand.exact
                    found.pop(cand.path, None)
                    break
        return found

    def _items(self, elements: list[dict[str, Any]],
               parsed: ParsedInstruction) -> dict[str, Candidate]:
        """Rows of a list that carry every qualifier and context word; act on the row's main
        link, else the row itself when it is clickable."""
        texts: dict[str, str] = {}
        in_nav: dict[str, bool] = {}
        by_path = {el["path"]: el for el in elements}
        for el in elements:
            if el["role"] in ("row", "listitem", "article", "option", "treeitem"):
                texts[el["path"]] = el["selfText"]
                in_nav[el["path"]] = el["inNav"]
            if el["rowPath"] and el["rowPath"] not in texts:
                texts[el["rowPath"]] = el["row"] + " " + el["rowExtra"]
                in_nav[el["rowPath"]] = el["inNav"]
        words = [*parsed.qualifiers, *parsed.context]
        matched = [p for p, t in texts.items() if all(_has_words(t, w) for w in words)]
        if not words:
            matched = list(texts)
        matched = [p for p in matched
                   if not any(q != p and q.startswith(p + " > ") for q in matched)]
        if parsed.ordinal is not None and matched:
            # "the first email": counted within the one list of the page's content
            # (navigation, menus and tabs are not it); two such lists are ambiguous
            content = [p for p in matched if not in_nav.get(p)] or matched
            groups: dict[str, list[str]] = {}
            for p in content:
                groups.setdefault(p.rsplit(" > ", 1)[0], []).append(p)
            if len(groups) > 1:
                return {}
            matched = content
        found: dict[str, Candidate] = {}
        for path in matched:
            inside = [el for el in elements if el["path"].startswith(path + " > ")
                      and el["role"] == "link" and el["visible"]]
            inside.sort(key=lambda el: (not el["hasHeading"], el["order"]))
            act = inside[0] if inside else by_path.get(path)
            if act is None or not act["interactive"]:
                continue
            how = "item with " + " ".join(repr(w) for w in words) if words else "item"
            found[act["path"]] = Candidate(act["path"], act, 0.97, how, exact=True)
        return found

    # ---- decision

    async def _decide(self, page: Page, parsed: ParsedInstruction, instruction: str,
                      found: dict[str, Candidate], value: str | None) -> Resolution | Escalation:
        action = parsed.action
        visible = [c for c in found.values() if c.info["visible"]]
        usable = [c for c in visible if c.info["enabled"] and c.info["hit"] != "covered"]
        if action == "select" and value is not None and "{{" not in value:
            wanted = value.strip().lower()
            with_option = [c for c in usable if not c.info["options"] or any(
                wanted in (label.lower(), val.lower()) for label, val in c.info["options"])]
            if usable and not with_option:
                return Escalation(f"no option {value!r} in the matching dropdown", instruction,
                                  self._report(usable))
            usable = with_option
        usable.sort(key=lambda c: (-c.score, c.info["order"]))
        if not usable:
            blocked = sorted(visible, key=lambda c: -c.score)
            if blocked and blocked[0].score >= self.threshold:
                top = blocked[0]
                why = "is disabled" if not top.info["enabled"] else \
                    f"is covered by {top.info['coveredBy'] or 'another element'}"
                return Escalation(f"the matching element {top.describe()} {why}", instruction,
                                  self._report(blocked))
            return Escalation("no visible element matches the instruction", instruction)
        top = usable[0]
        if top.score < self.threshold:
            return Escalation(f"best match {top.describe()} scored {top.score:.2f}, below the "
                              f"threshold {self.threshold:.2f}", instruction, self._report(usable))
        exact = "exact" in top.how or top.how.startswith("item")
        margin = self.margin if exact else self.partial_margin
        blocked = [c for c in visible if c not in usable]  # disabled or covered look-alikes
        rivals = [c for c in [*usable[1:], *blocked]
                  if c.score >= max(PLAUSIBLE, top.score - margin)]
        if rivals and parsed.ordinal is not None:
            tier = sorted([top, *[c for c in rivals if c.score >= self.threshold
                                  and c.score >= top.score - self.margin]],
                          key=lambda c: c.info["order"])
            index = parsed.ordinal - 1 if parsed.ordinal > 0 else len(tier) + parsed.ordinal
            if 0 <= index < len(tier) and len(tier) == len(rivals) + 1:
                top, rivals = tier[index], []
        elif not rivals and parsed.ordinal not in (None, 1, -1) and not parsed.item:
            return Escalation("the instruction picks an element by position among others "
                              "that do not match", instruction, self._report(usable))
        if rivals:
            return Escalation(f"ambiguous: {len(rivals) + 1} elements match about equally well "
                              f"(a partial match needs a lead of {margin:.2f})", instruction,
                              self._report(usable))
        spec = await self._unique_spec(page, top)
        if spec is None:
            return Escalation(f"could not build a locator that matches only {top.describe()}",
                              instruction, self._report(usable))
        final_action = action
        if action == "fill" and top.info["kind"] == "select":
            final_action = "select"
        if action == "select" and top.info["kind"] not in ("select", "fillable"):
            final_action = "click"
        runner_up = usable[1] if len(usable) > 1 and usable[1] is not top else (
            usable[0] if usable[0] is not top else None)
        match = {"role": top.info["role"] or top.info["tag"], "name": top.info["name"][:120],
                 "how": top.how, "score": round(top.score, 3),
                 "runnerUp": None if runner_up is None else {
                     "description": runner_up.describe(), "score": round(runner_up.score, 3)},
                 "margin": None if runner_up is None else round(top.score - runner_up.score, 3)}
        return Resolution(final_action, spec, value if final_action != "click" else None,
                          round(min(1.0, top.score), 3), "grounding", top.describe(),
                          instruction, match)

    def _report(self, cands: Sequence[Candidate]) -> tuple[dict[str, Any], ...]:
        ranked = sorted(cands, key=lambda c: c.score, reverse=True)[:MAX_CANDIDATES_REPORTED]
        return tuple({"description": c.describe(), "score": round(c.score, 3), "how": c.how,
                      "testid": c.info.get("testid")} for c in ranked)

    async def _probe(self, loc: Locator) -> list[dict[str, Any]]:
        try:
            result: list[dict[str, Any]] = await loc.evaluate_all(_INFO_JS)
            return result
        except Exception as exc:  # detached frame, navigation in progress
            log.debug("probe failed: %s", exc)
            return []

    async def _unique_spec(self, page: Page, cand: Candidate) -> dict[str, Any] | None:
        """The most readable spec that matches exactly this element (hidden ones included)."""
        info = cand.info
        specs: list[dict[str, Any]] = []
        if info["role"] and info["name"] and info["role"] in _LEAF_ROLES | {"row", "gridcell",
                                                                            "cell", "treeitem"}:
            specs.append({"strategy": "role", "role": info["role"], "name": info["name"],
                          "exact": True})
        if info.get("testid"):
            specs.append({"strategy": "testid", "value": info["testid"]})
        if info.get("cssId"):
            specs.append({"strategy": "css", "selector": info["cssId"]})
        if ">>>" not in cand.path:
            specs.append({"strategy": "css", "selector": cand.path})
        for spec in specs:
            try:
                paths = [i["path"] for i in await self._probe(locator_from_cached(page, spec))]
            except Exception as exc:
                log.debug("locator %s not usable: %s", spec, exc)
                continue
            if paths == [cand.path]:
                return spec
        return None


async def hit_test(loc: Locator) -> dict[str, Any]:
    """Scroll the element (or a hidden checkbox's label) into view and say whether it is the
    top-most element at its click point: ``{"state": "ok"|"covered"|..., "x", "y", "via"}``."""
    result: dict[str, Any] = await loc.evaluate(_HIT_JS)
    return result


def match_summary(match: Mapping[str, Any] | None) -> str:
    """ "; chose button "Next" by name exact at 1.00, runner-up ... (margin 0.28)" for logs."""
    if not match:
        return ""
    text = f"; chose {match.get('role')} \"{match.get('name')}\" by {match.get('how')} at " \
           f"{match.get('score', 0):.2f}"
    runner_up = match.get("runnerUp")
    if runner_up:
        text += f", runner-up {runner_up['description']} at {runner_up['score']:.2f} " \
                f"(margin {match.get('margin', 0):.2f})"
    else:
        text += ", no runner-up"
    return text


# --------------------------------------------------------------------------- chain + LLM


async def validate_resolution(page: Page, resolution: Resolution) -> bool:
    """True when the resolution's locator matches exactly one visible, enabled element."""
    if resolution.locator is None:
        return resolution.action == "press"
    try:
        loc = locator_from_cached(page, resolution.locator)
        infos: list[dict[str, Any]] = await loc.evaluate_all(_INFO_JS)
    except Exception:
        return False
    return len(infos) == 1 and bool(infos[0]["visible"]) and bool(infos[0]["enabled"])


class ChainResolver:
    """Grounding first, then each further resolver (an LLM), then escalate.

    A later resolver's answer is only taken when it clears the threshold and its locator
    matches exactly one visible, enabled element: an LLM may suggest, it may not guess.
    """

    def __init__(self, resolvers: Sequence[Resolver], threshold: float = 0.75) -> None:
        self.resolvers = list(resolvers)
        self.threshold = threshold

    async def resolve(self, page: Page, instruction: str,
                      variables: Mapping[str, Any] | None = None, *,
                      secret_names: Sequence[str] = ()) -> Resolution | Escalation:
        reasons: list[str] = []
        filled = _fill_in(instruction, variables or {})
        candidates: tuple[dict[str, Any], ...] = ()
        for index, resolver in enumerate(self.resolvers):
            try:
                if isinstance(resolver, GroundingResolver):
                    result = await resolver.resolve(page, instruction, variables,
                                                    secret_names=secret_names)
                else:
                    result = await resolver.resolve(page, filled)
            except Exception as exc:
                log.warning("resolver %s failed: %s", type(resolver).__name__, type(exc).__name__)
                reasons.append(f"{type(resolver).__name__} failed")
                continue
            if isinstance(result, Escalation):
                reasons.append(result.reason)
                candidates = candidates or result.candidates
                continue
            if index == 0 and isinstance(resolver, GroundingResolver):
                return result
            if result.confidence < self.threshold:
                reasons.append(f"{type(resolver).__name__} was not confident enough "
                               f"({result.confidence:.2f})")
                continue
            if not await validate_resolution(page, result):
                reasons.append(f"{type(resolver).__name__} proposed a locator that does not "
                               "match exactly one visible element")
                continue
            return result
        return Escalation("; ".join(reasons) or "no resolver", filled, candidates)


def load_llm_resolver(path: str, settings: Any) -> Resolver:
    """Import ``package.module:Name`` (or ``package.module.Name``) and build it.

    ``Name`` may be a class or factory called with ``settings``, or an object that already
    has an async ``resolve(page, instruction)``.
    """
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"llm_resolver must be a dotted path, got {path!r}")
    obj = getattr(importlib.import_module(module_name), attr)
    resolver = obj if hasattr(obj, "resolve") and not isinstance(obj, type) else obj(settings)
    if not isinstance(resolver, Resolver):
        raise TypeError(f"{path} did not produce a Resolver (needs async resolve(page, text))")
    return resolver


def build_resolver(settings: Any) -> Resolver:
    """The resolver the runner uses: grounding, plus the configured LLM resolver if any."""
    grounding = GroundingResolver.from_settings(settings)
    path = getattr(settings, "llm_resolver", None)
    if not path:
        return grounding
    return ChainResolver([grounding, load_llm_resolver(path, settings)], grounding.threshold)
