"""Decision rules: a small, safe expression language over execution variables (no eval).

A decision step's rule is parsed here once (so a bad rule is refused when the document is
built, not halfway through a run) and evaluated against the execution's variables each time
the step runs. Grammar (docs/architecture.md, "Decision rules")::

    rule       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := condition ("and" condition)*
    condition  := "(" or_expr ")"
                | "not" condition
                | path "exists" | path "not" "exists"
                | path op literal
                | path                                  same as: path == true
    op         := "==" | "!=" | ">" | "<" | ">=" | "<=" | "contains" | "matches"
    path       := name ("." (name | digits))*          e.g. email.category, emails.0.id
    literal    := JSON string | JSON number | true | false | null

Word operators (and, or, not, exists, contains, matches) are case-insensitive; literals are
JSON (double-quoted strings). ``not`` binds tightest, then ``and``, then ``or``; ``and`` and
``or`` short-circuit. A bare path is a boolean test (``email.is_investor``), the form
aef.transform derives from a workflow's boolean ``conditionSchema``.

Values read from a page are strings, so comparisons against a number literal accept a string
that is a JSON number ("3" > 2), and ``== true`` accepts "true"/"false". Anything else that
cannot be compared (a list against a number, a missing variable) raises :class:`RuleError`,
which makes the runner ask the person instead of guessing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aef.errors import ValidationFailed

__all__ = [
    "MAX_DEPTH",
    "MAX_RULE_LENGTH",
    "All",
    "AnyOf",
    "Comparison",
    "Exists",
    "MissingVariable",
    "Not",
    "Rule",
    "RuleError",
    "evaluate",
    "parse",
]

MAX_RULE_LENGTH = 2000
MAX_DEPTH = 16  # nested parentheses and `not`s; keeps recursion bounded for any input


class RuleError(ValidationFailed):
    """The rule cannot be parsed, or cannot be evaluated against these variables."""

    code, title = "invalid_rule", "The decision rule is not valid"


class MissingVariable(RuleError):
    """The rule names a variable (or a field of one) that the execution has not set."""

    code, title = "missing_variable", "The decision rule uses a variable that is not set"

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(detail, path=path)
        self.path = path


# --- syntax tree --------------------------------------------------------------------------

_COMPARE_OPS = ("==", "!=", ">", "<", ">=", "<=")
_WORD_OPS = ("contains", "matches")
_KEYWORDS = frozenset({"and", "or", "not", "exists", *_WORD_OPS})


@dataclass(frozen=True)
class Comparison:
    path: tuple[str, ...]
    op: str
    literal: Any
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{'.'.join(self.path)} {self.op} {json.dumps(self.literal, ensure_ascii=False)}"


@dataclass(frozen=True)
class Exists:
    path: tuple[str, ...]
    negated: bool = False

    def __str__(self) -> str:
        return f"{'.'.join(self.path)} {'not exists' if self.negated else 'exists'}"


@dataclass(frozen=True)
class Not:
    term: Node

    def __str__(self) -> str:
        return f"not {_wrap(self.term)}"


@dataclass(frozen=True)
class All:
    terms: tuple[Node, ...]

    def __str__(self) -> str:
        return " and ".join(_wrap(t) for t in self.terms)


@dataclass(frozen=True)
class AnyOf:
    terms: tuple[Node, ...]

    def __str__(self) -> str:
        return " or ".join(_wrap(t) for t in self.terms)


Node: TypeAlias = Comparison | Exists | Not | All | AnyOf


def _wrap(node: Node) -> str:
    return f"({node})" if isinstance(node, All | AnyOf) else str(node)


@dataclass(frozen=True)
class Rule:
    """A parsed rule; ``str(rule)`` is a canonical form that parses back to an equal rule."""

    source: str
    root: Node

    def evaluate(self, variables: Mapping[str, Any]) -> bool:
        return _eval(self.root, variables)

    @property
    def paths(self) -> frozenset[str]:
        """Dotted variable paths the rule reads (for checking a workflow before it runs)."""
        return frozenset(".".join(p) for p in _paths(self.root))

    @property
    def variables(self) -> frozenset[str]:
        """Top-level variable names the rule reads."""
        return frozenset(p[0] for p in _paths(self.root))

    def __str__(self) -> str:
        return str(self.root)


def _paths(node: Node) -> list[tuple[str, ...]]:
    if isinstance(node, Comparison | Exists):
        return [node.path]
    if isinstance(node, Not):
        return _paths(node.term)
    return [p for t in node.terms for p in _paths(t)]


# --- tokenizer ----------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?![A-Za-z0-9_.])
  | (?P<op>==|!=|>=|<=|>|<)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+))*)
    """,
    re.VERBOSE,
)
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class _Token:
    kind: str  # string | number | op | lparen | rparen | word | end
    text: str
    pos: int


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while True:
        while pos < len(source) and source[pos].isspace():
            pos += 1
        if pos >= len(source):
            tokens.append(_Token("end", "", pos))
            return tokens
        match = _TOKEN.match(source, pos)
        if match is None or match.lastgroup is None:
            raise _syntax(source, pos, _unexpected_char_hint(source, pos))
        tokens.append(_Token(match.lastgroup, match.group(), pos))
        pos = match.end()


def _unexpected_char_hint(source: str, pos: int) -> str:
    char = source[pos]
    if char == "'":
        return "strings must use double quotes"
    if char == '"':
        return "unterminated string"
    if char == "=":
        return "use '==' to compare"
    return f"unexpected character {char!r}"


def _syntax(source: str, pos: int, message: str) -> RuleError:
    return RuleError(f"invalid rule {source!r} at position {pos}: {message}", position=pos)


# --- parser -------------------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def fail(self, message: str, tok: _Token | None = None) -> RuleError:
        return _syntax(self.source, (tok or self.tok).pos, message)

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.lower() in words

    def parse(self) -> Node:
        node = self.or_expr(0)
        if self.tok.kind != "end":
            raise self.fail(f"expected 'and', 'or' or the end, found {self.tok.text!r}")
        return node

    def or_expr(self, depth: int) -> Node:
        terms = [self.and_expr(depth)]
        while self.is_word("or"):
            self.i += 1
            terms.append(self.and_expr(depth))
        return terms[0] if len(terms) == 1 else AnyOf(tuple(_flatten(terms, AnyOf)))

    def and_expr(self, depth: int) -> Node:
        terms = [self.condition(depth)]
        while self.is_word("and"):
            self.i += 1
            terms.append(self.condition(depth))
        return terms[0] if len(terms) == 1 else All(tuple(_flatten(terms, All)))

    def condition(self, depth: int) -> Node:
        tok = self.tok
        if tok.kind == "lparen" or self.is_word("not"):
            if depth >= MAX_DEPTH:
                raise self.fail(f"parentheses or 'not' nested deeper than {MAX_DEPTH}")
        if self.is_word("not"):
            self.i += 1
            return Not(self.condition(depth + 1))
        if tok.kind == "lparen":
            self.i += 1
            node = self.or_expr(depth + 1)
            if self.tok.kind != "rparen":
                raise self.fail(f"expected ')', found {self.tok.text or 'the end'!r}")
            self.i += 1
            return node
        if tok.kind != "word" or tok.text.lower() in _KEYWORDS:
            raise self.fail(f"expected a variable name, found {tok.text or 'the end'!r}")
        self.i += 1
        path = tuple(tok.text.split("."))
        if self.is_word("exists"):
            self.i += 1
            return Exists(path)
        if self.is_word("not"):
            self.i += 1
            if not self.is_word("exists"):
                raise self.fail("expected 'exists' after 'not'")
            self.i += 1
            return Exists(path, negated=True)
        op_tok = self.tok
        if op_tok.kind in ("end", "rparen") or self.is_word("and", "or"):
            return Comparison(path, "==", True)  # a bare path: a boolean test
        if op_tok.kind == "op":
            op = op_tok.text
        elif self.is_word(*_WORD_OPS):
            op = op_tok.text.lower()
        else:
            found = op_tok.text or "the end"
            raise self.fail(
                f"expected an operator (== != > < >= <= contains matches exists), found {found!r}"
            )
        self.i += 1
        literal = self.literal()
        return _comparison(path, op, literal, self, op_tok)

    def literal(self) -> Any:
        tok = self.tok
        if tok.kind in ("string", "number"):
            try:
                value = json.loads(tok.text)
            except ValueError as exc:
                raise self.fail(f"invalid literal {tok.text!r}: {exc}") from None
            if isinstance(value, float) and not math.isfinite(value):
                raise self.fail(f"number {tok.text!r} is out of range")
        elif tok.kind == "word" and tok.text in ("true", "false", "null"):
            value = {"true": True, "false": False, "null": None}[tok.text]
        else:
            raise self.fail(
                'expected a JSON literal ("text", 3, true, false or null), '
                f"found {tok.text or 'the end'!r}"
            )
        self.i += 1
        return value


def _flatten(terms: list[Node], kind: type[All] | type[AnyOf]) -> list[Node]:
    out: list[Node] = []
    for term in terms:
        out.extend(term.terms if isinstance(term, kind) else [term])
    return out


def _comparison(
    path: tuple[str, ...], op: str, literal: Any, parser: _Parser, op_tok: _Token
) -> Comparison:
    if op == "matches":
        if not isinstance(literal, str):
            raise parser.fail("'matches' needs a string pattern", op_tok)
        try:
            pattern = re.compile(literal)
        except (re.error, RecursionError, OverflowError, ValueError) as exc:
            raise parser.fail(f"invalid pattern {literal!r}: {exc}", op_tok) from None
        return Comparison(path, op, literal, pattern)
    if op in ("<", ">", "<=", ">=") and (
        literal is None or isinstance(literal, bool) or not isinstance(literal, int | float | str)
    ):
        raise parser.fail(f"'{op}' needs a number or a string", op_tok)
    return Comparison(path, op, literal)


def parse(rule: str) -> Rule:
    """Parse and validate a rule; raises :class:`RuleError` with the position of the fault."""
    if not isinstance(rule, str):
        raise RuleError(f"a rule must be a string, not {type(rule).__name__}")
    if not rule.strip():
        raise RuleError("the rule is empty")
    if len(rule) > MAX_RULE_LENGTH:
        raise RuleError(f"the rule is longer than {MAX_RULE_LENGTH} characters")
    return Rule(rule, _Parser(rule).parse())


def evaluate(rule: str | Rule, variables: Mapping[str, Any]) -> bool:
    """Evaluate a rule against execution variables: True means the decision's "yes" branch."""
    parsed = rule if isinstance(rule, Rule) else parse(rule)
    return parsed.evaluate(variables)


# --- evaluation ---------------------------------------------------------------------------

_MISSING = object()


def _resolve(path: tuple[str, ...], variables: Mapping[str, Any]) -> Any:
    value: Any = variables
    for depth, segment in enumerate(path):
        if isinstance(value, Mapping):
            value = value.get(segment, _MISSING)
        elif (
            isinstance(value, Sequence)
            and not isinstance(value, str | bytes)
            and segment.isdigit()
            and int(segment) < len(value)
        ):
            value = value[int(segment)]
        else:
            value = _MISSING
        if value is _MISSING:
            dotted = ".".join(path)
            where = "" if depth == 0 else f" (no {segment!r} in {'.'.join(path[:depth])!r})"
            raise MissingVariable(dotted, f"variable {dotted!r} is not set{where}")
    return value


def _eval(node: Node, variables: Mapping[str, Any]) -> bool:
    if isinstance(node, All):
        return all(_eval(t, variables) for t in node.terms)
    if isinstance(node, AnyOf):
        return any(_eval(t, variables) for t in node.terms)
    if isinstance(node, Not):
        return not _eval(node.term, variables)
    if isinstance(node, Exists):
        try:
            present = _resolve(node.path, variables) is not None
        except MissingVariable:
            present = False
        return present != node.negated
    return _compare(node, _resolve(node.path, variables))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any) -> int | float | None:
    """A number, or a string holding a JSON number (page text); otherwise None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _JSON_NUMBER.fullmatch(text := value.strip()):
        if not any(c in text for c in ".eE"):
            try:
                return int(text)
            except ValueError:  # longer than Python's int-string limit
                pass
        return float(text)
    return None


def _equals(value: Any, literal: Any) -> bool:
    if literal is None:
        return value is None
    if isinstance(literal, bool):
        if isinstance(value, bool):
            return value is literal
        return isinstance(value, str) and value.strip().lower() == str(literal).lower()
    if _is_number(literal):
        number = None if isinstance(value, bool) else _as_number(value)
        return number is not None and number == literal
    return isinstance(value, str) and value == literal


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _compare(node: Comparison, value: Any) -> bool:
    op, literal, dotted = node.op, node.literal, ".".join(node.path)
    if op == "==":
        return _equals(value, literal)
    if op == "!=":
        return not _equals(value, literal)
    if op == "contains":
        if isinstance(value, str):
            if not isinstance(literal, str):
                raise RuleError(f"{dotted!r} is text; 'contains' needs a string literal")
            return literal in value
        if isinstance(value, Mapping):
            return isinstance(literal, str) and literal in value
        if isinstance(value, Sequence) and not isinstance(value, bytes):
            return any(_equals(item, literal) for item in value)
        raise RuleError(f"cannot apply 'contains' to {dotted!r} ({_describe(value)})")
    if op == "matches":
        if not isinstance(value, str):
            raise RuleError(f"'matches' needs text, but {dotted!r} is {_describe(value)}")
        assert node.pattern is not None
        return node.pattern.search(value) is not None
    left: int | float | str
    right: int | float | str
    if isinstance(literal, str):
        if not isinstance(value, str):
            raise RuleError(f"cannot compare {dotted!r} ({_describe(value)}) with a string")
        left, right = value, literal
    else:
        number = None if isinstance(value, bool) else _as_number(value)
        if number is None:
            raise RuleError(f"cannot compare {dotted!r} ({_describe(value)}) with a number")
        left, right = number, literal
    if op == ">":
        return left > right  # type: ignore[operator]
    if op == "<":
        return left < right  # type: ignore[operator]
    if op == ">=":
        return left >= right  # type: ignore[operator]
    return left <= right  # type: ignore[operator]
