"""Grounding: map a natural-language instruction to one element on the page, or escalate.

"Never guess" is the rule. An instruction is parsed into an action (click, fill, select, check,
uncheck, press), target names (quoted text, or the words around role nouns such as "button",
"field", "dropdown"), role hints and a value. Candidates come from Playwright's own locators
(role + accessible name exact / normalized / substring, label, placeholder, text, title, and a
few input-type hints such as "password field"), so what we score is what a replay will find.
Each element keeps its best score; hidden elements are dropped, disabled ones only explain an
escalation. The resolver acts only when the top score clears ``settings.grounding_threshold``
and no other element comes within ``AMBIGUITY_MARGIN`` of it. Two identical "Delete" buttons
therefore escalate instead of clicking the first.

A :class:`Resolution` carries a JSON locator spec (e.g. ``{"strategy": "role", "role": "button",
"name": "Next", "exact": true}``) that was verified to match exactly the chosen element, so the
engine can cache it per step and replay it with :func:`locator_from_cached`.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from playwright.async_api import Locator, Page

log = logging.getLogger("runner.grounding")

AMBIGUITY_MARGIN = 0.1
ROLE_MISMATCH_PENALTY = 0.15
MAX_CANDIDATES_REPORTED = 5

# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Resolution:
    """An unambiguous match: what to do, on which element, how sure we are."""

    action: str  # click | fill | select | check | uncheck | press
    locator: dict[str, Any] | None  # None only for a page-level key press
    value: str | None = None  # text to type / option to select / key; {{placeholders}} kept
    confidence: float = 1.0
    source: str = "grounding"  # grounding | llm | cache
    description: str = ""  # e.g. 'button "Next"' (never contains a substituted secret)
    instruction: str = ""

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


# --------------------------------------------------------------------------- parsing

_QUOTE_PAIRS = {"'": "'", '"': '"', "\u201c": "\u201d", "\u2018": "\u2019", "`": "`"}
_QUOTED = re.compile(
    r"""(?:(?<=\s)|^)(['"`\u201c\u2018])(.+?)(['"`\u201d\u2019])(?=[\s.,;:!?]|$)"""
)

# Role nouns → Playwright roles. Order matters: longer phrases first.
_ROLE_NOUNS: list[tuple[str, tuple[str, ...]]] = [
    ("radio button", ("radio",)),
    ("check box", ("checkbox",)),
    ("checkbox", ("checkbox",)),
    ("text field", ("textbox", "searchbox", "combobox", "spinbutton")),
    ("text box", ("textbox", "searchbox", "combobox", "spinbutton")),
    ("textbox", ("textbox", "searchbox", "combobox", "spinbutton")),
    ("input field", ("textbox", "searchbox", "combobox", "spinbutton")),
    ("search box", ("searchbox", "textbox", "combobox")),
    ("drop-down", ("combobox", "listbox")),
    ("dropdown", ("combobox", "listbox")),
    ("drop down", ("combobox", "listbox")),
    ("select box", ("combobox", "listbox")),
    ("combo box", ("combobox", "listbox")),
    ("combobox", ("combobox", "listbox")),
    ("menu item", ("menuitem", "menuitemcheckbox", "menuitemradio")),
    ("button", ("button",)),
    ("link", ("link",)),
    ("tab", ("tab",)),
    ("toggle", ("switch", "checkbox")),
    ("switch", ("switch", "checkbox")),
    ("radio", ("radio",)),
    ("field", ("textbox", "searchbox", "combobox", "spinbutton")),
    ("input", ("textbox", "searchbox", "combobox", "spinbutton")),
    ("textarea", ("textbox",)),
    ("select", ("combobox", "listbox")),
    ("list", ("combobox", "listbox")),
    ("option", ("option", "radio", "checkbox")),
    ("box", ()),  # resolved by the action: checkbox for check, textbox for fill
    ("icon", ()),
]
_NOUN_RE = "|".join(re.escape(n) for n, _ in _ROLE_NOUNS)

DEFAULT_ROLES: dict[str, tuple[str, ...]] = {
    "click": ("button", "link", "menuitem", "tab", "option", "radio", "checkbox", "switch",
              "menuitemcheckbox", "menuitemradio", "treeitem"),
    "fill": ("textbox", "searchbox", "combobox", "spinbutton"),
    "select": ("combobox", "listbox"),
    "check": ("checkbox", "switch", "radio", "menuitemcheckbox"),
    "uncheck": ("checkbox", "switch", "menuitemcheckbox"),
}
_KIND_FOR_ACTION = {"fill": "fillable", "select": "select", "check": "checkable",
                    "uncheck": "checkable"}

_KEYS = {
    "enter": "Enter", "return": "Enter", "tab": "Tab", "escape": "Escape", "esc": "Escape",
    "space": "Space", "spacebar": "Space", "backspace": "Backspace", "delete": "Delete",
    "arrow up": "ArrowUp", "up arrow": "ArrowUp", "arrow down": "ArrowDown",
    "down arrow": "ArrowDown", "arrow left": "ArrowLeft", "left arrow": "ArrowLeft",
    "arrow right": "ArrowRight", "right arrow": "ArrowRight", "page down": "PageDown",
    "page up": "PageUp", "home": "Home", "end": "End",
}

# Input types a target word points to: "password field" → input[type=password].
_TYPE_HINTS: dict[str, str] = {
    "password": "input[type=password]",
    "email": "input[type=email]",
    "e-mail": "input[type=email]",
    "search": "input[type=search]",
    "phone": "input[type=tel]",
    "telephone": "input[type=tel]",
    "url": "input[type=url]",
    "website": "input[type=url]",
    "date": "input[type=date]",
}
_FILLER_WORDS = {"address", "field", "input", "box", "number", "text", "the", "your", "a", "an"}

_FILL_PATTERNS = [
    re.compile(r"^(?:type|enter|input|write|put|insert|key\s+in|paste)\s+(?P<value>.+?)\s+"
               r"(?:into|in|inside|on|to)\s+(?P<target>.+)$", re.I | re.S),
    re.compile(r"^(?:fill(?:\s+in|\s+out)?|complete|populate|set)\s+(?P<target>.+?)\s+"
               r"(?:with|to|as)\s+(?P<value>.+)$", re.I | re.S),
]
_SELECT_PATTERN = re.compile(
    r"^(?:select|choose|pick)\s+(?P<value>.+?)\s+(?:in|from|for|within|on)\s+(?P<target>.+)$",
    re.I | re.S)
_CHECK_PATTERN = re.compile(r"^(?:check|tick|mark|enable|turn\s+on|select|activate)\s+"
                            r"(?P<target>.+)$", re.I | re.S)
_UNCHECK_PATTERN = re.compile(r"^(?:uncheck|un-check|untick|unmark|deselect|disable|"
                              r"turn\s+off|clear)\s+(?P<target>.+)$", re.I | re.S)
_CLICK_PATTERN = re.compile(r"^(?:click|double-click|press|tap|hit|push|open|follow|choose|"
                            r"select|pick|activate)\s+(?:on\s+|at\s+)?(?P<target>.+)$",
                            re.I | re.S)
_PRESS_KEY = re.compile(r"^(?:press|hit|push|type)\s+(?:the\s+)?(?P<key>[a-z ]+?)"
                        r"(?:\s+key)?(?:\s+(?:to|and)\s+.*)?$", re.I)
_NOT_ACTIONS = re.compile(r"^(?:check|verify|ensure|make sure|confirm)\s+(?:that|if|whether)\b",
                          re.I)
_CONDITIONAL = re.compile(r"^(?:if|when|unless|once|after|before|wait)\b", re.I)
_ORDINALS = re.compile(r"\b(?:first|second|third|fourth|fifth|last|next\s+\w+\s+in|each|every|"
                       r"all|any)\b", re.I)
_CHECK_NOUNS = re.compile(r"\b(?:check\s*box|checkbox|box|toggle|switch|radio|option|"
                          r"terms|consent)\b", re.I)


@dataclass(frozen=True)
class ParsedInstruction:
    action: str
    targets: tuple[str, ...] = ()
    quoted: bool = False
    roles: tuple[str, ...] = ()  # hinted by nouns ("button"); empty = defaults for the action
    value: str | None = None
    type_hints: tuple[str, ...] = ()  # CSS for "password field" and friends
    or_click: bool = False  # "Select X" without a container: an option, else a click


def _unquote(text: str) -> tuple[str, bool]:
    text = text.strip()
    if len(text) >= 2 and text[0] in _QUOTE_PAIRS and text[-1] == _QUOTE_PAIRS[text[0]]:
        return text[1:-1], True
    return text, False


def _strip_articles(text: str) -> str:
    text = re.sub(r"^(?:on\s+|at\s+)?(?:the|a|an|your|our|this|that)\s+", "", text.strip(),
                  flags=re.I)
    return text.strip(" .,:;!")


def _parse_target(text: str, action: str) -> tuple[tuple[str, ...], bool, tuple[str, ...],
                                                    tuple[str, ...]]:
    """(target alternatives, quoted?, role hints, input-type hints) from a target phrase."""
    quoted = [m.group(2) for m in _QUOTED.finditer(text)]
    rest = _QUOTED.sub(" ", text) if quoted else text
    rest = _strip_articles(rest)
    # "the Next button to complete login": drop the purpose clause after a role noun.
    rest = re.sub(rf"\b({_NOUN_RE})\s+(?:to|in order to|so that|so as to|and then)\s+.*$",
                  r"\1", rest, flags=re.I)
    roles: list[str] = []
    # Role nouns in whatever is left; "box" depends on the action.
    name = rest
    m = re.match(rf"^(?P<noun>{_NOUN_RE})\s+(?:named|called|labell?ed|titled|saying|"
                 rf"with\s+(?:the\s+)?(?:text|label|name))?\s*(?P<name>.+)$", rest, re.I)
    if m and not quoted:
        noun, name = m.group("noun").lower(), m.group("name")
    else:
        m2 = re.search(rf"^(?P<name>.*?)\s*\b(?P<noun>{_NOUN_RE})\b\s*"
                       rf"(?:(?:labell?ed|named|called|titled|with\s+(?:the\s+)?"
                       rf"(?:text|label|name))\s+(?P<after>.+))?$", rest, re.I)
        noun = m2.group("noun").lower() if m2 else ""
        if m2:
            name = (m2.group("after") or m2.group("name") or "").strip()
    if noun:
        for known, mapped in _ROLE_NOUNS:
            if known == noun:
                if known == "box":
                    mapped = DEFAULT_ROLES["check"] if action in ("check", "uncheck") else (
                        DEFAULT_ROLES["fill"] if action == "fill" else ())
                roles.extend(mapped)
                break
    name = _strip_articles(name)
    if not name and noun == "search box":
        name = "search"
    if quoted:
        targets = tuple(q.strip() for q in quoted if q.strip())
    else:
        parts = [p for p in re.split(r"\s+or\s+|\s*/\s*", name) if p.strip()]
        targets = tuple(_strip_articles(p) for p in parts)
    words = set(re.findall(r"[\w-]+", text.lower()))
    hints = tuple(dict.fromkeys(css for word, css in _TYPE_HINTS.items() if word in words))
    return tuple(t for t in targets if t), bool(quoted), tuple(dict.fromkeys(roles)), hints


def parse_instruction(instruction: str) -> ParsedInstruction | None:
    """Parse an instruction; None when it is not a single element action we understand."""
    text = re.sub(r"\s+", " ", instruction).strip().rstrip(".!")
    text = re.sub(r"^(?:please|now|then|next,)\s+", "", text, flags=re.I)
    if not text or _NOT_ACTIONS.match(text) or _CONDITIONAL.match(text):
        return None
    key = _PRESS_KEY.match(text)
    if key and key.group("key").lower().strip() in _KEYS:
        return ParsedInstruction("press", value=_KEYS[key.group("key").lower().strip()])
    for pattern in _FILL_PATTERNS:
        m = pattern.match(text)
        if m:
            value, _ = _unquote(m.group("value"))
            targets, quoted, roles, hints = _parse_target(m.group("target"), "fill")
            return ParsedInstruction("fill", targets, quoted, roles, value, hints)
    m = _SELECT_PATTERN.match(text)
    if m and not _CHECK_NOUNS.search(m.group("target")):
        value, _ = _unquote(m.group("value"))
        targets, quoted, roles, hints = _parse_target(m.group("target"), "select")
        return ParsedInstruction("select", targets, quoted, roles, value, hints)
    m = _UNCHECK_PATTERN.match(text)
    if m:
        target = m.group("target")
        if text.lower().startswith("clear") and not _CHECK_NOUNS.search(target):
            targets, quoted, roles, hints = _parse_target(target, "fill")
            return ParsedInstruction("fill", targets, quoted, roles, "", hints)
        targets, quoted, roles, hints = _parse_target(target, "uncheck")
        return ParsedInstruction("uncheck", targets, quoted, roles, None, hints)
    m = _CHECK_PATTERN.match(text)
    if m and (not re.match(r"^(?:select|activate)\b", text, re.I)
              or _CHECK_NOUNS.search(m.group("target"))):
        targets, quoted, roles, hints = _parse_target(m.group("target"), "check")
        return ParsedInstruction("check", targets, quoted, roles, None, hints)
    m = _CLICK_PATTERN.match(text)
    if m:
        targets, quoted, roles, hints = _parse_target(m.group("target"), "click")
        if re.match(r"^(?:select|choose|pick)\b", text, re.I) and not roles:
            # "Select 'Seed'": an option of some dropdown, or a clickable thing.
            return ParsedInstruction("select", targets, quoted, (), targets[0] if targets else
                                     None, hints, or_click=True)
        return ParsedInstruction("click", targets, quoted, roles, None, hints)
    return None


# --------------------------------------------------------------------------- page probing

_INFO_JS = r"""
(els) => {
  const pathOf = (e) => {
    const parts = [];
    let n = e;
    while (n && n.nodeType === 1) {
      const p = n.parentElement;
      const tag = n.tagName.toLowerCase();
      if (!p) {
        const root = n.getRootNode();
        parts.unshift(tag);
        if (root && root.host) { parts.unshift('>>>'); n = root.host; continue; }
        break;
      }
      parts.unshift(`${tag}:nth-child(${Array.prototype.indexOf.call(p.children, n) + 1})`);
      n = p;
    }
    return parts.join(' > ');
  };
  const norm = (s) => (s || '').replace(/\s+/g, ' ').trim();
  const text = (n) => norm(n.innerText !== undefined ? n.innerText : n.textContent);
  const visible = (e) => {
    if (!e.isConnected) return false;
    if (e.checkVisibility && !e.checkVisibility({opacityProperty: true,
        visibilityProperty: true, contentVisibilityAuto: true})) return false;
    const r = e.getBoundingClientRect();
    return r.width >= 1 && r.height >= 1;
  };
  const tagRole = (e) => {
    const role = e.getAttribute('role');
    if (role) return role.split(' ')[0];
    const tag = e.tagName.toLowerCase(), type = (e.getAttribute('type') || 'text').toLowerCase();
    if (tag === 'a' && e.hasAttribute('href')) return 'link';
    const buttonTypes = ['submit', 'button', 'reset', 'image'];
    if (tag === 'button' || (tag === 'input' && buttonTypes.includes(type))) return 'button';
    if (tag === 'input' && type === 'checkbox') return 'checkbox';
    if (tag === 'input' && type === 'radio') return 'radio';
    if (tag === 'input' && type === 'search') return 'searchbox';
    if (tag === 'input' && ['number'].includes(type)) return 'spinbutton';
    if (tag === 'input' || tag === 'textarea') return 'textbox';
    if (tag === 'select') return (e.multiple || e.size > 1) ? 'listbox' : 'combobox';
    if (tag === 'summary') return 'button';
    if (tag === 'option') return 'option';
    return '';
  };
  const anchorOf = (e) => {
    const a = e.closest('a[href],button,summary,label,[onclick],[role=button],[role=link],' +
      '[role=menuitem],[role=tab],[role=option],[role=checkbox],[role=radio],[role=switch],' +
      '[role=treeitem],input,select,textarea');
    if (!a) return e;
    if (a.tagName.toLowerCase() === 'label' && a.control) return a.control;
    return a;
  };
  return els.map((el) => {
    const e = anchorOf(el);
    const tag = e.tagName.toLowerCase();
    const type = (e.getAttribute('type') || '').toLowerCase();
    const role = tagRole(e);
    const labelledby = (e.getAttribute('aria-labelledby') || '').split(/\s+/)
      .map((id) => id && document.getElementById(id)).filter(Boolean).map(text).join(' ');
    const labels = e.labels ? Array.from(e.labels).map(text).join(' ') : '';
    const name = norm(e.getAttribute('aria-label')) || labelledby || labels ||
      (tag === 'input' && ['submit', 'button', 'reset'].includes(type) ? norm(e.value) : '') ||
      (['input', 'textarea', 'select'].includes(tag) ? '' : text(e)) ||
      norm(e.getAttribute('placeholder')) || norm(e.getAttribute('title')) ||
      norm(e.getAttribute('alt'));
    const checkable = (tag === 'input' && ['checkbox', 'radio'].includes(type)) ||
      ['checkbox', 'switch', 'radio', 'menuitemcheckbox', 'menuitemradio'].includes(role);
    const isSelect = tag === 'select' || role === 'listbox' ||
      (role === 'combobox' && tag !== 'input' && tag !== 'textarea');
    const fillable = !checkable && !isSelect && (tag === 'textarea' ||
      (tag === 'input' && !['submit', 'button', 'reset', 'file', 'image', 'hidden', 'range',
        'color'].includes(type)) || e.isContentEditable ||
      ['textbox', 'searchbox', 'spinbutton', 'combobox'].includes(role));
    const disabled = (e.matches(':disabled')) || e.getAttribute('aria-disabled') === 'true' ||
      !!e.closest('[aria-disabled=true]') || (fillable && (e.readOnly === true));
    const interactive = e !== el || !!role || e.hasAttribute('onclick') || e.tabIndex >= 0 ||
      getComputedStyle(e).cursor === 'pointer';
    return {
      path: pathOf(e), tag, type, role, name: name.slice(0, 300),
      visible: visible(e), enabled: !disabled, interactive,
      kind: checkable ? 'checkable' : isSelect ? 'select' : fillable ? 'fillable' : 'other',
      testid: e.getAttribute('data-testid'), id: e.id || null,
      cssId: e.id ? '#' + CSS.escape(e.id) : null,
      options: tag === 'select'
        ? Array.from(e.options).map((o) => [norm(o.label || o.text), o.value]) : [],
    };
  });
}
"""

_PATHS_JS = _INFO_JS  # the same probe; we only read .path (anchors included)


@dataclass
class Candidate:
    path: str
    info: dict[str, Any]
    score: float = 0.0
    how: str = ""  # e.g. "role exact"
    specs: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def describe(self) -> str:
        role = self.info.get("role") or self.info.get("tag") or "element"
        name = self.info.get("name") or ""
        return f'{role} "{name}"' if name else role


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


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def _normalized_regex(target: str) -> str:
    words = [re.escape(w) for w in _words(target)]
    core = r"\W+".join(words) if words else re.escape(target.strip())
    return rf"^\W*{core}\W*(?:\((?:required|optional)\)\W*)?$"


def _partial_score(target: str, name: str) -> float:
    """Substring matches: whole words covering much of the name score higher."""
    t_words, n_words = _words(target), _words(name)
    if not t_words or not n_words:
        return 0.0
    coverage = min(1.0, len(" ".join(t_words)) / max(1, len(" ".join(n_words))))
    joined = " " + " ".join(n_words) + " "
    if (" " + " ".join(t_words) + " ") in joined:
        return 0.55 + 0.3 * coverage
    return 0.4 + 0.2 * coverage


class GroundingResolver:
    """The built-in resolver: roles, labels, placeholders, text; never guesses."""

    def __init__(self, threshold: float = 0.75, *, margin: float = AMBIGUITY_MARGIN) -> None:
        self.threshold = threshold
        self.margin = margin

    @classmethod
    def from_settings(cls, settings: Any) -> GroundingResolver:
        return cls(float(getattr(settings, "grounding_threshold", 0.75)))

    async def resolve(self, page: Page, instruction: str) -> Resolution | Escalation:
        parsed = parse_instruction(instruction)
        if parsed is None:
            return Escalation("the instruction is not a single element action the grounding "
                              "understands", instruction)
        if parsed.action == "press":
            return Resolution("press", None, parsed.value, 1.0, description=f"key {parsed.value}",
                              instruction=instruction)
        if not parsed.targets and not parsed.type_hints:
            return Escalation("no target element named in the instruction", instruction)
        if parsed.action == "click" and not parsed.quoted and any(
            _ORDINALS.search(t) for t in parsed.targets
        ):
            return Escalation("the instruction picks an element by position or condition; "
                              "that needs a person or an explicit selector", instruction)
        candidates = await self._candidates(page, parsed)
        result = await self._decide(page, parsed, instruction, candidates)
        if isinstance(result, Escalation) and parsed.or_click and not candidates:
            as_click = ParsedInstruction("click", parsed.targets, parsed.quoted, (), None,
                                         parsed.type_hints)
            result = await self._decide(page, as_click, instruction,
                                        await self._candidates(page, as_click))
        return result

    # ---- candidate generation

    async def _probe(self, loc: Locator) -> list[dict[str, Any]]:
        try:
            result: list[dict[str, Any]] = await loc.evaluate_all(_INFO_JS)
            return result
        except Exception as exc:  # detached frame, navigation in progress
            log.debug("probe failed: %s", exc)
            return []

    async def _candidates(self, page: Page, parsed: ParsedInstruction) -> dict[str, Candidate]:
        found: dict[str, Candidate] = {}
        hinted = set(parsed.roles)
        action = parsed.action
        roles = parsed.roles or DEFAULT_ROLES[action]
        if parsed.roles:  # also look at the other plausible roles, with a penalty
            roles = tuple(dict.fromkeys([*parsed.roles, *DEFAULT_ROLES[action]]))
        needed_kind = _KIND_FOR_ACTION.get(action)

        def add(info: dict[str, Any], score: float, how: str, spec: dict[str, Any],
                role: str | None) -> None:
            if needed_kind and info["kind"] != needed_kind:
                editable_combo = info["kind"] == "fillable" and info["role"] == "combobox"
                if not ((action == "select" and editable_combo)
                        or (action == "fill" and info["kind"] == "select")):
                    return
            the_role = role or info.get("role") or ""
            if hinted and the_role not in hinted:
                score -= ROLE_MISMATCH_PENALTY
            if action == "click" and not info.get("interactive"):
                score = min(score, 0.5)
            cand = found.setdefault(info["path"], Candidate(info["path"], info))
            cand.specs.append((score, spec))
            if score > cand.score:
                cand.score, cand.how = score, how

        for target in parsed.targets:
            variants = [(target, 1.0)]
            stripped = " ".join(w for w in target.split() if w.lower() not in _FILLER_WORDS)
            if stripped and stripped.lower() != target.lower():
                variants.append((stripped, 0.9))
            for text, factor in variants:
                await self._by_role(page, roles, text, factor, add)
                await self._by_text_like(page, action, text, factor, add)
        for css in parsed.type_hints:
            t_words = {w for t in parsed.targets for w in _words(t)} - _FILLER_WORDS
            hint_words = {w for w, c in _TYPE_HINTS.items() if c == css}
            base = 0.85 if not (t_words - hint_words) else 0.6
            for info in await self._probe(page.locator(css)):
                add(info, base, f"input type {css}", {"strategy": "css", "selector": css}, None)
        if action == "select" and parsed.value and not parsed.roles and (
            not parsed.targets or parsed.targets == (parsed.value,)
        ):
            await self._selects_with_option(page, parsed.value, add)
        return found

    async def _by_role(self, page: Page, roles: Sequence[str], text: str, factor: float,
                       add: Any) -> None:
        for role in roles:
            loose = page.get_by_role(role, name=text)  # type: ignore[arg-type]
            infos = await self._probe(loose)
            if not infos:
                continue
            exact_paths = {i["path"] for i in await self._probe(
                page.get_by_role(role, name=text, exact=True))}  # type: ignore[arg-type]
            rx = _normalized_regex(text)
            norm_paths = {i["path"] for i in await self._probe(
                page.get_by_role(role, name=re.compile(rx, re.I)))}  # type: ignore[arg-type]
            for info in infos:
                if info["path"] in exact_paths:
                    add(info, 1.0 * factor, "role exact",
                        {"strategy": "role", "role": role, "name": text, "exact": True}, role)
                elif info["path"] in norm_paths:
                    add(info, 0.92 * factor, "role normalized",
                        {"strategy": "role", "role": role, "name": rx, "regex": True}, role)
                else:
                    add(info, _partial_score(text, info["name"]) * factor, "role partial",
                        {"strategy": "role", "role": role, "name": text, "exact": False}, role)

    async def _by_text_like(self, page: Page, action: str, text: str, factor: float,
                            add: Any) -> None:
        strategies: list[tuple[str, float]] = [("label", 1.0), ("placeholder", 0.95),
                                               ("title", 0.9)]
        if action == "click":
            strategies.append(("text", 0.9))
        for strategy, base in strategies:
            loose_spec = {"strategy": strategy, "text": text, "exact": False}
            infos = await self._probe(locator_from_cached(page, loose_spec))
            if not infos:
                continue
            exact_spec = {"strategy": strategy, "text": text, "exact": True}
            exact_paths = {i["path"] for i in await self._probe(
                locator_from_cached(page, exact_spec))}
            for info in infos:
                if not info["visible"]:
                    continue
                if info["path"] in exact_paths:
                    add(info, base * factor, f"{strategy} exact", exact_spec, None)
                else:
                    add(info, _partial_score(text, info["name"]) * base * factor,
                        f"{strategy} partial", loose_spec, None)

    async def _selects_with_option(self, page: Page, value: str, add: Any) -> None:
        wanted = value.strip().lower()
        for info in await self._probe(page.locator("select")):
            if any(wanted in (label.lower(), val.lower()) for label, val in info["options"]):
                add(info, 0.85, "select containing the option",
                    {"strategy": "css", "selector": "select"}, None)

    # ---- decision

    async def _decide(self, page: Page, parsed: ParsedInstruction, instruction: str,
                      found: dict[str, Candidate]) -> Resolution | Escalation:
        action, value = parsed.action, parsed.value
        usable = [c for c in found.values() if c.info["visible"] and c.info["enabled"]]
        if action == "select" and value is not None and "{{" not in value:
            wanted = value.strip().lower()
            with_option = [c for c in usable if not c.info["options"] or any(
                wanted in (label.lower(), val.lower()) for label, val in c.info["options"])]
            if usable and not with_option:
                return Escalation(f"no option {value!r} in the matching dropdown", instruction,
                                  self._report(usable))
            usable = with_option
        usable.sort(key=lambda c: c.score, reverse=True)
        if not usable:
            disabled = [c for c in found.values() if c.info["visible"] and not c.info["enabled"]]
            if disabled:
                return Escalation("the matching element is disabled", instruction,
                                  self._report(disabled))
            return Escalation("no visible element matches the instruction", instruction)
        top = usable[0]
        if top.score < self.threshold:
            return Escalation(f"best match {top.describe()} scored {top.score:.2f}, below the "
                              f"threshold {self.threshold:.2f}", instruction, self._report(usable))
        rivals = [c for c in usable[1:] if c.score >= top.score - self.margin]
        if rivals:
            return Escalation(f"ambiguous: {len(rivals) + 1} elements match about equally well",
                              instruction, self._report(usable))
        spec = await self._unique_spec(page, top)
        if spec is None:
            return Escalation(f"could not build a locator that matches only {top.describe()}",
                              instruction, self._report(usable))
        final_action = action
        if action == "fill" and top.info["kind"] == "select":
            final_action = "select"
        confidence = round(min(1.0, top.score), 3)
        return Resolution(final_action, spec, value, confidence, "grounding", top.describe(),
                          instruction)

    def _report(self, cands: Sequence[Candidate]) -> tuple[dict[str, Any], ...]:
        ranked = sorted(cands, key=lambda c: c.score, reverse=True)[:MAX_CANDIDATES_REPORTED]
        return tuple({"description": c.describe(), "score": round(c.score, 3), "how": c.how,
                      "testid": c.info.get("testid")} for c in ranked)

    async def _unique_spec(self, page: Page, cand: Candidate) -> dict[str, Any] | None:
        """The best spec that matches exactly this element (nothing else, hidden included)."""
        specs = [s for _, s in sorted(cand.specs, key=lambda x: x[0], reverse=True)]
        if cand.info.get("testid"):
            specs.append({"strategy": "testid", "value": cand.info["testid"]})
        if cand.info.get("cssId"):
            specs.append({"strategy": "css", "selector": cand.info["cssId"]})
        if ">>>" not in cand.path:
            specs.append({"strategy": "css", "selector": cand.path})
        seen: list[dict[str, Any]] = []
        for spec in specs:
            for variant in (spec, {**spec, "visible": True}):
                if variant in seen:
                    continue
                seen.append(variant)
                try:
                    paths = [i["path"] for i in await self._probe(
                        locator_from_cached(page, variant))]
                except Exception as exc:
                    log.debug("locator %s not usable: %s", variant, exc)
                    continue
                if paths == [cand.path]:
                    return variant
        return None


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

    async def resolve(self, page: Page, instruction: str) -> Resolution | Escalation:
        reasons: list[str] = []
        candidates: tuple[dict[str, Any], ...] = ()
        for index, resolver in enumerate(self.resolvers):
            try:
                result = await resolver.resolve(page, instruction)
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
        return Escalation("; ".join(reasons) or "no resolver", instruction, candidates)


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
