"""Reads the TypeScript subset docs/api-contract.ts is written in, and checks JSON against it.

The subset: `export interface Name { field: T; other?: T; }` and `export type Name = T;` where
T is `string`, `number`, `boolean`, `null`, `unknown`, a string literal, a named type, an
inline `{ ... }`, `T[]`, `Record<string, T>`, a union `A | B`, or `( T )`. Comments are
ignored, except the `@response METHOD PATH STATUS` and `@problem` tags of a declaration's
doc comment, which say which responses the type describes.

`check` follows TypeScript with strictNullChecks: a field marked `?` may be absent but is never
`null` unless its type says `| null`; a required field must be there; extra fields are fine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(r"""\s*(?:('[^']*'|"[^"]*")|(-?\d+(?:\.\d+)?)|([A-Za-z_$][\w$]*)|(\S))""")
_DOC = re.compile(r"/\*\*(.*?)\*/\s*export\s+(?:interface|type)\s+(\w+)", re.S)
_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
PRIMITIVES = frozenset({"string", "number", "boolean", "null", "unknown", "any"})

# A type: ("prim", name) | ("lit", value) | ("ref", name) | ("array", T) | ("union", [T])
#         | ("object", {name: (T, optional)}) | ("record", T)
Type = tuple[str, Any]


@dataclass
class Contract:
    types: dict[str, Type] = field(default_factory=dict)
    responses: dict[tuple[str, str, int], str] = field(default_factory=dict)
    problem: str | None = None


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        for match in _TOKEN.finditer(_COMMENTS.sub(" ", text)):
            self.tokens.append(match.group(match.lastindex or 0))
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise SyntaxError(f"expected {expected!r}, found {token!r} at token {self.pos}")
        self.pos += 1
        return token

    def declarations(self) -> dict[str, Type]:
        found: dict[str, Type] = {}
        while self.peek() is not None:
            if self.peek() == "export":
                self.take()
            kind = self.take()
            name = self.take()
            if name in found:
                raise SyntaxError(f"{name} is declared twice")
            if kind == "interface":
                found[name] = self.object()
            elif kind == "type":
                self.take("=")
                found[name] = self.union()
                self.take(";")
            else:
                raise SyntaxError(f"unexpected {kind!r}")
        return found

    def object(self) -> Type:
        self.take("{")
        members: dict[str, tuple[Type, bool]] = {}
        while self.peek() != "}":
            name = self.take().strip("'\"")
            optional = self.peek() == "?"
            if optional:
                self.take()
            self.take(":")
            members[name] = (self.union(), optional)
            if self.peek() in (";", ","):
                self.take()
        self.take("}")
        return ("object", members)

    def union(self) -> Type:
        if self.peek() == "|":
            self.take()
        branches = [self.postfix()]
        while self.peek() == "|":
            self.take()
            branches.append(self.postfix())
        return branches[0] if len(branches) == 1 else ("union", branches)

    def postfix(self) -> Type:
        result = self.primary()
        while self.peek() == "[":
            self.take("[")
            self.take("]")
            result = ("array", result)
        return result

    def primary(self) -> Type:
        token = self.take()
        if token == "{":
            self.pos -= 1
            return self.object()
        if token == "(":
            inner = self.union()
            self.take(")")
            return inner
        if token[0] in "'\"":
            return ("lit", token[1:-1])
        if token in ("true", "false"):
            return ("lit", token == "true")
        if re.fullmatch(r"-?\d+(\.\d+)?", token):
            return ("lit", float(token) if "." in token else int(token))
        if token in PRIMITIVES:
            return ("prim", token)
        if token in ("Record", "Array") and self.peek() == "<":
            self.take("<")
            args = [self.union()]
            while self.peek() == ",":
                self.take()
                args.append(self.union())
            self.take(">")
            return ("record", args[-1]) if token == "Record" else ("array", args[0])
        return ("ref", token)


def parse(text: str) -> Contract:
    contract = Contract(types=_Parser(text).declarations())
    for doc, name in _DOC.findall(text):
        for method, path, status in re.findall(r"@response\s+(\S+)\s+(\S+)\s+(\d{3})", doc):
            contract.responses[(method.upper(), path, int(status))] = name
        if "@problem" in doc:
            contract.problem = name
    for name in contract.types:
        for ref in _refs(contract.types[name]):
            if ref not in contract.types:
                raise SyntaxError(f"{name} uses {ref}, which is not declared")
    return contract


def _refs(t: Type) -> list[str]:
    kind, arg = t
    if kind == "ref":
        return [arg]
    if kind in ("array", "record"):
        return _refs(arg)
    if kind == "union":
        return [r for branch in arg for r in _refs(branch)]
    if kind == "object":
        return [r for member, _ in arg.values() for r in _refs(member)]
    return []


def describe(t: Type) -> str:
    kind, arg = t
    if kind in ("prim", "ref"):
        return str(arg)
    if kind == "lit":
        return repr(arg)
    if kind == "array":
        return f"{describe(arg)}[]"
    if kind == "record":
        return f"Record<string, {describe(arg)}>"
    if kind == "union":
        return " | ".join(describe(b) for b in arg)
    return "{...}"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def allows_null(contract: Contract, t: Type) -> bool:
    kind, arg = t
    if kind == "ref":
        return allows_null(contract, contract.types[arg])
    if kind == "union":
        return any(allows_null(contract, branch) for branch in arg)
    return t in (("prim", "null"), ("prim", "unknown"), ("prim", "any"))


def check(contract: Contract, t: Type, value: Any, path: str = "$") -> list[str]:
    """Every way `value` differs from `t` (empty when it conforms)."""
    kind, arg = t
    if kind == "ref":
        return check(contract, contract.types[arg], value, path)
    if kind == "prim":
        if arg in ("unknown", "any") or _json_kind(value) == arg:
            return []
        return [f"{path}: expected {arg}, got {_json_kind(value)} {value!r:.60}"]
    if kind == "lit":
        if value == arg and _json_kind(value) == _json_kind(arg):
            return []
        return [f"{path}: expected {arg!r}, got {value!r:.60}"]
    if kind == "union":
        attempts = [check(contract, branch, value, path) for branch in arg]
        if any(not problems for problems in attempts):
            return []
        return [f"{path}: {value!r:.60} is none of {describe(t)}"]
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected {describe(t)}, got {_json_kind(value)}"]
        return [p for i, item in enumerate(value) for p in check(contract, arg, item,
                                                                  f"{path}[{i}]")]
    if not isinstance(value, dict):
        return [f"{path}: expected an object, got {_json_kind(value)} {value!r:.60}"]
    if kind == "record":
        return [p for key, item in value.items()
                for p in check(contract, arg, item, f"{path}.{key}")]
    problems: list[str] = []
    for name, (member, optional) in arg.items():
        where = f"{path}.{name}"
        if name not in value:
            if not optional:
                problems.append(f"{where}: missing (required by the contract)")
        elif optional and value[name] is None and not allows_null(contract, member):
            problems.append(f"{where}: null, but an optional field is left out, never null")
        else:
            problems.extend(check(contract, member, value[name], where))
    return problems
