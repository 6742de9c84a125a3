"""Natural-language instructions parsed for grounding: an action, targets, hints, a value.

The instruction *template* is parsed first (``{{name}}`` placeholders are single
tokens), then variable values are put into the target phrase; so a value such as "Back to
Basics Bakery" never splits the sentence. An instruction becomes an action (click, fill,
select, check, uncheck, press, back), target names (quoted text, or the words around role nouns
such as "button", "field"), role hints, a value, and optionally a context (the row or region the
element sits in: "the email from Sarah", "the Firm cell for Marcus Webb", "+ Add under Deals")
and an ordinal ("the first unread email"). A value that *describes* data ("the company name") is
never typed: it is bound to the matching ``{{variable}}`` when one exists, else we escalate.

Pure text work (no page): :mod:`runner.grounding` matches the result against the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_QUOTE_PAIRS = {"'": "'", '"': '"', "\u201c": "\u201d", "\u2018": "\u2019", "`": "`"}
_QUOTED = re.compile(
    r"""(?:(?<=\s)|^)(['"`\u201c\u2018])(.+?)(['"`\u201d\u2019])(?=[\s.,;:!?]|$)"""
)

# Role nouns → roles. Order matters: longer phrases first.
_TEXTISH = ("textbox", "searchbox", "combobox", "spinbutton")
_ROLE_NOUNS: list[tuple[str, tuple[str, ...]]] = [
    ("radio button", ("radio",)),
    ("check box", ("checkbox",)),
    ("checkbox", ("checkbox",)),
    ("text field", _TEXTISH), ("text box", _TEXTISH), ("textbox", _TEXTISH),
    ("input field", _TEXTISH), ("input box", _TEXTISH),
    ("search box", ("searchbox", "textbox", "combobox")),
    ("search field", ("searchbox", "textbox", "combobox")),
    ("search bar", ("searchbox", "textbox", "combobox")),
    ("drop-down", ("combobox", "listbox")), ("dropdown", ("combobox", "listbox")),
    ("drop down", ("combobox", "listbox")), ("select box", ("combobox", "listbox")),
    ("combo box", ("combobox", "listbox")), ("combobox", ("combobox", "listbox")),
    ("picker", ("combobox", "listbox", "button")),
    ("menu item", ("menuitem", "menuitemcheckbox", "menuitemradio")),
    ("icon button", ("button",)),
    ("button", ("button",)),
    ("link", ("link",)),
    ("tab", ("tab",)),
    ("toggle", ("switch", "checkbox")),
    ("switch", ("switch", "checkbox")),
    ("radio", ("radio",)),
    ("field", _TEXTISH),
    ("input", _TEXTISH),
    ("textarea", ("textbox",)),
    ("select", ("combobox", "listbox")),
    ("cell", ("gridcell", "cell")),
    ("option", ("option", "radio", "checkbox", "menuitem", "menuitemradio")),
    ("box", ()),  # resolved by the action: checkbox for check, textbox for fill
    ("icon", ()),
]
_NOUN_RE = "|".join(re.escape(n) for n, _ in _ROLE_NOUNS)

DEFAULT_ROLES: dict[str, tuple[str, ...]] = {
    "click": ("button", "link", "menuitem", "tab", "option", "radio", "checkbox", "switch",
              "menuitemcheckbox", "menuitemradio", "treeitem", "gridcell", "cell", "row"),
    "fill": _TEXTISH,
    "select": ("combobox", "listbox"),
    "check": ("checkbox", "switch", "radio", "menuitemcheckbox", "menuitemradio"),
    "uncheck": ("checkbox", "switch", "menuitemcheckbox"),
}
KIND_FOR_ACTION = {"fill": "fillable", "select": "select", "check": "checkable",
                    "uncheck": "checkable"}

# Nouns that name a row/item of a list rather than a control: "the email from Sarah".
_ITEM_NOUNS = ("email", "e-mail", "message", "conversation", "thread", "result", "search result",
               "row", "record", "entry", "ticket", "issue", "contact", "deal", "notification",
               "order", "product", "task", "item", "lead", "account", "opportunity", "case",
               "candidate", "invoice", "customer", "user", "member", "repository", "repo",
               "pull request", "document", "doc", "card", "event", "meeting", "chat", "listing",
               "company", "file", "payment", "transaction", "charge", "subscription", "refund",
               "quote", "proposal", "campaign", "post", "comment", "review", "application",
               "request", "booking", "reservation", "shipment", "project", "job", "report")
_ITEM_RE = "|".join(re.escape(n) for n in sorted(_ITEM_NOUNS, key=len, reverse=True))
_REGION_NOUNS = (r"section|panel|card|sidebar|side panel|dialog|modal|window|popup|pop-up|menu|"
                 r"toolbar|list|table|area|pane|column|form|header|footer|bar|box|widget|tab|"
                 r"page|screen|drawer|module|group")
_ORDINAL_WORDS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3,
                  "fourth": 4, "4th": 4, "fifth": 5, "5th": 5, "last": -1, "top": 1}
_ORDINAL_RE = r"(?:first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|last|top)"

_KEYS = {
    "enter": "Enter", "return": "Enter", "tab": "Tab", "escape": "Escape", "esc": "Escape",
    "space": "Space", "spacebar": "Space", "backspace": "Backspace", "delete": "Delete",
    "arrow up": "ArrowUp", "up arrow": "ArrowUp", "arrow down": "ArrowDown",
    "down arrow": "ArrowDown", "arrow left": "ArrowLeft", "left arrow": "ArrowLeft",
    "arrow right": "ArrowRight", "right arrow": "ArrowRight", "page down": "PageDown",
    "page up": "PageUp", "home": "Home", "end": "End",
}

# Input types a target word points to: "password field" → input[type=password].
TYPE_HINTS: dict[str, str] = {
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
FILLER_WORDS = {"address", "field", "input", "box", "number", "text", "the", "your", "a", "an",
                 "folder", "line",
                 "value", "area"}

_FILL_VERB = r"(?:type|enter|input|write|put|insert|key\s+in|paste|add)"
_FILL_AS = re.compile(rf"^(?:{_FILL_VERB}|use|set)\s+(?P<value>.+?)\s+as\s+(?:the\s+|your\s+|"
                      r"a\s+|an\s+)?(?P<target>.+)$", re.I | re.S)
_FILL_SEPARATORS = ("into", "inside", "in", "on", "to")
_FILL_HEAD = re.compile(rf"^{_FILL_VERB}\s+(?P<rest>.+)$", re.I | re.S)
_FILL_WITH = re.compile(r"^(?:fill(?:\s+in|\s+out)?|complete|populate|set|change|update)\s+"
                        r"(?P<target>.+?)\s+(?:with|to|as)\s+(?P<value>.+)$", re.I | re.S)
_FILL_IN_FIRST = re.compile(rf"^in\s+(?P<target>.+?),?\s+{_FILL_VERB}\s+(?P<value>.+)$",
                            re.I | re.S)
_SELECT_PATTERN = re.compile(
    r"^(?:select|choose|pick)\s+(?P<value>.+?)\s+(?:in|from|for|within|on|as|under)\s+"
    r"(?P<target>.+)$", re.I | re.S)
_TOGGLE_ON = re.compile(r"^(?:toggle|turn|switch|flip|set)\s+(?:on\s+(?P<a>.+)|(?P<b>.+?)\s+on)$"
                        r"|^(?:enable|activate)\s+(?P<c>.+)$", re.I | re.S)
_TOGGLE_OFF = re.compile(r"^(?:toggle|turn|switch|flip|set)\s+(?:off\s+(?P<a>.+)|(?P<b>.+?)\s+"
                         r"off)$|^(?:disable|deactivate)\s+(?P<c>.+)$", re.I | re.S)
_MARK_AS = re.compile(r"^mark\s+(?:(?P<object>.+?)\s+)?as\s+(?P<state>(?:not\s+)?[\w-]+)$",
                      re.I | re.S)
_CHECK_PATTERN = re.compile(r"^(?:check|tick|mark|select|activate|opt\s+in\s+to)\s+"
                            r"(?P<target>.+)$", re.I | re.S)
_UNCHECK_PATTERN = re.compile(r"^(?:uncheck|un-check|untick|unmark|deselect|clear|"
                              r"opt\s+out\s+of)\s+(?P<target>.+)$", re.I | re.S)
_CLICK_PATTERN = re.compile(
    r"^(?:click|double-click|press|tap|hit|push|open|follow|choose|select|pick|activate|"
    r"go\s+to|navigate\s+to|visit|switch\s+to|view|expand|toggle|use|go\s+back\s+to|"
    r"return\s+to|back\s+to)\s+(?:on\s+|at\s+)?"
    r"(?P<target>.+)$", re.I | re.S)
_CLOSE = re.compile(r"^(?:close|dismiss|exit)\s+(?P<target>.+)$", re.I | re.S)
_PAGE_N = re.compile(r"^(?:go\s+to|open|navigate\s+to|click(?:\s+on)?|view)\s+(?:the\s+)?"
                     r"(?:(?P<word>next|previous)\s+page|page\s+(?P<n>\d+))"
                     r"(?:\s+of\s+(?:the\s+)?results)?$", re.I)
_BACK = re.compile(r"^(?:go|navigate|head)\s+back(?:\s+to\s+the\s+previous\s+page)?$"
                   r"|^(?:return|go)\s+to\s+the\s+previous\s+page$", re.I)
_PRESS_KEY = re.compile(r"^(?:press|hit|push|type)\s+(?:the\s+)?(?P<key>[a-z ]+?)"
                        r"(?:\s+key)?(?:\s+(?:to|and)\s+.*)?$", re.I)
_NOT_ACTIONS = re.compile(r"^(?:check|verify|ensure|make sure|confirm)\s+(?:that|if|whether)\b"
                          r"|^(?:wait|scroll|read|review|note|remember|copy|look|find|scan|"
                          r"decide|think|consider|repeat|log into|sign into)\b", re.I)
_CONDITIONAL = re.compile(r"^(?:if|when|unless|once|after|before|wait)\b", re.I)
QUANTIFIERS = re.compile(r"\b(?:each|every|all|any|some|relevant|appropriate|matching|"
                          r"correct|right|proper|needed|necessary|next\s+\w+\s+in)\b", re.I)
_CHECK_NOUNS = re.compile(r"\b(?:check\s*box|checkbox|box|toggle|switch|radio|option|"
                          r"terms|consent)\b", re.I)
_DESCRIPTION = re.compile(r"^(?:the|your|their|his|her|its|our|this|that|a|an|my)\s+\S", re.I)


@dataclass(frozen=True)
class ParsedInstruction:
    action: str
    targets: tuple[str, ...] = ()
    quoted: bool = False
    roles: tuple[str, ...] = ()  # hinted by nouns ("button"); empty = defaults for the action
    value: str | None = None
    type_hints: tuple[str, ...] = ()  # CSS for "password field" and friends
    or_click: bool = False  # "Select X" without a container: an option, else a click
    context: tuple[str, ...] = ()  # words the element's row or region must contain
    ordinal: int | None = None  # 1-based, -1 = last: picks among equally good matches
    item: bool = False  # the target is a row of a list ("the email from Sarah")
    qualifiers: tuple[str, ...] = ()  # words the item must carry ("unread", "LinkedIn")
    describes: bool = False  # the value describes data ("the company name")
    literal: str | None = None  # "Insert link": the target with its role noun
    icon: bool = False  # "the pencil icon": the target says what the icon looks like
    alternatives: tuple[ParsedInstruction, ...] = ()  # other readings, tried in order


def _unquote(text: str) -> tuple[str, bool]:
    text = text.strip()
    if len(text) >= 2 and text[0] in _QUOTE_PAIRS and text[-1] == _QUOTE_PAIRS[text[0]]:
        return text[1:-1], True
    return text, False


def _strip_articles(text: str) -> str:
    """ "the Next button" → "Next button"; "your email" → "email", but "My Network" is a name."""
    text = re.sub(r"^(?:on\s+|at\s+)?(?:(?i:the|a|an|this|that)|your|our|my)\s+", "",
                  text.strip())
    return text.strip(" .,:;!")


def _role_split(rest: str, action: str, quoted: bool) -> tuple[str, str]:
    """(name, role noun) of a target phrase such as "the Next button" / "the link Pricing"."""
    m2 = re.search(rf"^(?P<name>.*?)\s*\b(?P<noun>{_NOUN_RE})\b\s*"
                   rf"(?:(?:labell?ed|named|called|titled|with\s+(?:the\s+)?"
                   rf"(?:text|label|name))\s+(?P<after>.+))?$", rest, re.I)
    if m2 and (m2.group("name") or m2.group("after") or quoted):
        return (m2.group("after") or m2.group("name") or "").strip(), m2.group("noun").lower()
    m = re.match(rf"^(?P<noun>{_NOUN_RE})\s+(?:named|called|labell?ed|titled|saying|"
                 rf"with\s+(?:the\s+)?(?:text|label|name))?\s*(?P<name>.+)$", rest, re.I)
    if m and not quoted and not re.match(r"^(?:input|select|box|option|toggle)\b", rest, re.I):
        return m.group("name"), m.group("noun").lower()
    if m2:
        return "", m2.group("noun").lower()
    return rest, ""


def _roles_for(noun: str, action: str) -> tuple[str, ...]:
    for known, mapped in _ROLE_NOUNS:
        if known == noun:
            if known == "box":
                return DEFAULT_ROLES["check"] if action in ("check", "uncheck") else (
                    DEFAULT_ROLES["fill"] if action == "fill" else ())
            return mapped
    return ()


def _context_words(text: str) -> tuple[str, ...]:
    """ "the Edit contact dialog" → ("Edit contact",): the words a region/row must contain."""
    text = _strip_articles(text)
    text = re.sub(rf"\s+(?:{_REGION_NOUNS})$", "", text, flags=re.I)
    text = re.sub(rf"^(?:{_ITEM_RE})\s+(?:from|by|for|about|named|called|titled)\s+", "", text,
                  flags=re.I)
    text = text.strip(" .,:;!'\"")
    return (text,) if text else ()


def _readings(rest: str, text: str, action: str, quoted: list[str], ordinal: int | None,
              allow_item: bool) -> list[ParsedInstruction]:
    """The plain reading of a target phrase, then its reading as a row of a list."""
    name, noun = _role_split(rest, action, bool(quoted))
    roles = list(_roles_for(noun, action)) if noun else []
    name = re.sub(r"^(?:the|a|an)\s+", "", name.strip(), flags=re.I).strip(" .,:;!")
    literal = None
    if not name and noun in ("search box", "search field", "search bar"):
        name = "search"
    elif noun and name and not quoted:
        literal = f"{name} {noun}"  # "Insert link", "Close tab": the noun may be the name's
    if quoted:
        targets = tuple(q.strip() for q in quoted if q.strip())
    else:
        parts = [p for p in re.split(r"\s+or\s+|\s*/\s*", name) if p.strip()]
        targets = tuple(re.sub(r"^(?:the|a|an)\s+", "", p.strip(), flags=re.I) for p in parts)
        if len(targets) > 1 and len(name) <= 40:
            targets = (*targets, name)  # "Country/Region" may be the name itself
        if literal:
            targets = (*targets, literal)
    words = set(re.findall(r"[\w-]+", text.lower()))
    hints = tuple(dict.fromkeys(css for word, css in TYPE_HINTS.items() if word in words))
    plain = ParsedInstruction(action, tuple(t for t in targets if t), bool(quoted),
                              tuple(dict.fromkeys(roles)), None, hints, ordinal=ordinal,
                              literal=literal, icon=noun in ("icon", "icon button"))
    out = [plain]
    im = re.match(rf"^(?P<q>.*?)\s*\b(?P<kind>{_ITEM_RE})s?$", name, re.I)
    if allow_item and im and not noun and not quoted:
        qualifiers = tuple(w for w in re.split(r"\s+", im.group("q").strip()) if w)
        out.append(replace(plain, item=True, qualifiers=qualifiers, type_hints=(),
                           literal=None))
    return out


def _parse_target(text: str, action: str, *, split: bool = True) -> ParsedInstruction:
    """Targets, roles, hints, ordinal, item and context readings of a target phrase; the
    first reading is the literal one, the others are tried when it names nothing."""
    quoted = [m.group(2) for m in _QUOTED.finditer(text)]
    rest = _QUOTED.sub(" ", text).strip() if quoted else text
    rest = _strip_articles(rest)
    # "the Next button to complete login": drop the purpose clause after a role noun.
    rest = re.sub(rf"\b({_NOUN_RE}|{_ITEM_RE})\s+(?:to|in order to|so that|so as to|and then)"
                  r"\s+.*$", r"\1", rest, flags=re.I)
    om = re.match(rf"^{_ORDINAL_RE}\b\s*", rest, re.I)
    readings = _readings(rest, text, action, quoted, None, allow_item=not om)
    if om:  # "the first unread email"; but "First name" is a name
        readings += _readings(rest[om.end():], text, action, quoted,
                              _ORDINAL_WORDS[om.group(0).strip().lower()], allow_item=True)
    alts = readings[1:]
    if split and not quoted:
        # "<target> for|from|under|in <row or region>"
        for m in re.finditer(r"\s+(?:for|from|by|about|regarding|under|below|beneath|inside|"
                             r"next\s+to|beside|near|with|"
                             r"within|in|on|of|with subject|titled|named)\s+", text, re.I):
            head, ctx = text[:m.start()], text[m.end():]
            context = _context_words(ctx)
            if not head.strip() or not context:
                continue
            sub = _parse_target(head, action, split=False)
            for reading in (sub, *sub.alternatives):
                if reading.targets or reading.item:
                    alts.append(replace(reading, context=context, type_hints=(),
                                        alternatives=()))
            if len(alts) >= 6:
                break
    return replace(readings[0], alternatives=tuple(alts))


def _fill_split(rest: str) -> tuple[str, str] | None:
    """ "Back to Basics Bakery into the Company field" → (value, target): the most specific
    separator wins, and the target part must read like a target."""
    q = re.match(r"""^(['"\u201c\u2018])(.+?)(['"\u201d\u2019])\s+(?:into|inside|in|on|to)\s+"""
                 r"(?P<target>.+)$", rest, re.S)
    if q:
        return q.group(1) + q.group(2) + q.group(3), q.group("target")
    for sep in _FILL_SEPARATORS:
        spots = [m for m in re.finditer(rf"\s+{sep}\s+", rest, re.I)]
        if not spots:
            continue
        for m in spots:  # leftmost target that starts like one: "the ...", "your ...", quote
            target = rest[m.end():]
            if re.match(r"^(?:the|a|an|your|this|that|my)\b", target, re.I) or \
                    _QUOTED.match(target):
                return rest[:m.start()], target
        for m in reversed(spots):  # else the last one followed by a role noun
            if re.search(rf"\b(?:{_NOUN_RE})\b", rest[m.end():], re.I):
                return rest[:m.start()], rest[m.end():]
        m = spots[-1]
        return rest[:m.start()], rest[m.end():]
    return None


def _fill(value: str, target: str) -> ParsedInstruction:
    value, quoted = _unquote(value)
    parsed = _parse_target(target, "fill")
    describes = (not quoted and "{{" not in value and bool(_DESCRIPTION.match(value)))
    return replace(parsed, value=value, describes=describes)


def parse_instruction(instruction: str) -> ParsedInstruction | None:
    """Parse an instruction (template); None when it is not a single element action."""
    text = re.sub(r"\s+", " ", instruction).strip().rstrip(".!")
    text = re.sub(r"^(?:please|now|then|next,|and|also)\s+", "", text, flags=re.I)
    if not text or _NOT_ACTIONS.match(text) or _CONDITIONAL.match(text):
        return None
    key = _PRESS_KEY.match(text)
    if key and key.group("key").lower().strip() in _KEYS:
        return ParsedInstruction("press", value=_KEYS[key.group("key").lower().strip()])
    if _BACK.match(text):
        return ParsedInstruction("back")
    m = _PAGE_N.match(text)
    if m:
        n = m.group("n") or m.group("word").capitalize()
        names = (f"Page {n}", n, f"Go to page {n}") if m.group("n") else (
            f"{n} page", n, f"Go to {n.lower()} page")
        readings = [ParsedInstruction("click", (name,), roles=("link", "button"))
                    for name in names]
        return replace(readings[0], alternatives=tuple(readings[1:]))
    m = _FILL_IN_FIRST.match(text)
    if m:
        return _fill(m.group("value"), m.group("target"))
    m = _FILL_AS.match(text)
    if m and not re.search(r"\s(?:into|in|on)\s", m.group("value")):
        return _fill(m.group("value"), m.group("target"))
    m = _FILL_HEAD.match(text)
    if m:
        split = _fill_split(m.group("rest"))
        if split:
            return _fill(*split)
    m = _FILL_WITH.match(text)
    if m:
        return _fill(m.group("value"), m.group("target"))
    m = _SELECT_PATTERN.match(text)
    if m and not _CHECK_NOUNS.search(m.group("target")):
        value, _ = _unquote(m.group("value"))
        parsed = replace(_parse_target(m.group("target"), "select"), value=value)
        as_choice = ParsedInstruction("click", (value,), roles=(
            "radio", "option", "menuitemradio", "tab"), context=_context_words(
            m.group("target")))
        return replace(parsed, alternatives=(*parsed.alternatives, as_choice))
    m = _TOGGLE_OFF.match(text)
    if m:
        return _parse_target(m.group("a") or m.group("b") or m.group("c"), "uncheck")
    m = _TOGGLE_ON.match(text)
    if m:
        return _parse_target(m.group("a") or m.group("b") or m.group("c"), "check")
    m = _MARK_AS.match(text)
    if m:
        label = f"Mark as {m.group('state')}"
        if not m.group("object"):
            return ParsedInstruction("click", (label,), roles=("button", "menuitem", "link"))
        context, ordinal = _object_context(m.group("object"))
        return ParsedInstruction("click", (label,), roles=("button", "menuitem", "link"),
                                 context=context, ordinal=ordinal)
    m = _UNCHECK_PATTERN.match(text)
    if m:
        target = m.group("target")
        boxless = re.sub(r"\b(?:search|text|input|message|comment)\s+box\b", "", target, flags=re.I)
        if text.lower().startswith("clear") and not _CHECK_NOUNS.search(boxless):
            return replace(_parse_target(target, "fill"), value="")
        return _parse_target(target, "uncheck")
    m = _CHECK_PATTERN.match(text)
    if m and (not re.match(r"^(?:select|activate)\b", text, re.I)
              or _CHECK_NOUNS.search(m.group("target"))):
        return _parse_target(m.group("target"), "check")
    m = _CLOSE.match(text)
    if m:
        whole = _verb_phrase(text)
        ctx = _context_words(m.group("target"))
        alts = [ParsedInstruction("click", ("Close",), roles=("button",), context=ctx)] \
            if ctx else []
        generic = re.fullmatch(rf"(?:the\s+)?(?:{_REGION_NOUNS}|it)", m.group("target"), re.I)
        if generic:
            return ParsedInstruction("click", ("Close",), roles=("button",))
        return replace(whole, alternatives=(*alts, *whole.alternatives))
    m = _CLICK_PATTERN.match(text)
    if m:
        parsed = _parse_target(m.group("target"), "click")
        if re.match(r"^(?:select|choose|pick)\b", text, re.I) and not parsed.roles \
                and not parsed.item:
            # "Select 'Seed'": an option of some dropdown, or a clickable thing.
            return replace(parsed, action="select",
                           value=parsed.targets[0] if parsed.targets else None, or_click=True)
        if not re.match(r"^(?:click|double-click|press|tap|hit|push)\b", text, re.I):
            # "Follow Marcus Webb", "Open in new tab": the whole phrase may be the name
            whole = ParsedInstruction("click", (text,), roles=("button", "link", "menuitem"))
            return replace(whole, alternatives=(replace(parsed, alternatives=()),
                                                *parsed.alternatives))
        return parsed
    return _verb_phrase(text)


def _verb_phrase(text: str) -> ParsedInstruction:
    """Any other verb: a control named by the whole phrase ("Sign in with Google", "Remove
    label Work"), or the verb's control in the object's row/region ("Star the email from
    Sarah" → "Star" in Sarah's row)."""
    whole = ParsedInstruction("click", (text,), roles=("button", "link", "menuitem", "tab"))
    m = re.match(r"^(?P<verb>[A-Za-z][\w-]*(?:\s+(?:in|out|up|to|as|all))?)\s+(?P<obj>.+)$",
                 text)
    if not m:
        return whole
    context, ordinal = _object_context(m.group("obj"))
    if not context:
        return whole
    alt = ParsedInstruction("click", (m.group("verb"),), roles=("button", "link", "menuitem"),
                            context=context, ordinal=ordinal)
    return replace(whole, alternatives=(alt,))


def _object_context(text: str) -> tuple[tuple[str, ...], int | None]:
    """The row/region words of an object phrase: "the email from Sarah" → ("Sarah",)."""
    obj = _parse_target(text, "click")
    for reading in (obj, *obj.alternatives):
        if reading.item:
            words = [*reading.qualifiers, *reading.context]
            if words:
                return (" ".join(words),), reading.ordinal
    if obj.targets and not obj.item:
        return _context_words(" ".join(obj.targets[-1:])), obj.ordinal
    return (), obj.ordinal
