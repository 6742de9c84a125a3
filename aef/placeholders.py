"""`{{name}}` placeholders: one grammar for the transform (what a plan needs) and the runner.

A name is ASCII: a letter or `_`, then letters, digits, `_`, `.` and `-`; a dotted name is a
path into a variable (`{{email.subject}}`). It is the grammar of the `secrets` / `variables`
keys `POST /execute` accepts, so every name a plan can need is a name a caller can supply,
and a name the transform does not list as an input is never substituted at run time either.
Spaces inside the braces are allowed (`{{ name }}`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*"
PLACEHOLDER = re.compile(r"\{\{\s*(" + NAME + r")\s*\}\}")


def placeholder_names(text: str) -> list[str]:
    """The names of the placeholders in `text`, in order of first use, without repeats."""
    return list(dict.fromkeys(m.group(1) for m in PLACEHOLDER.finditer(text)))


def replace_placeholders(text: str, value_of: Callable[[str], str | None]) -> str:
    """Replace each placeholder by `value_of(name)`; a None answer keeps the placeholder."""

    def repl(match: re.Match[str]) -> str:
        value = value_of(match.group(1))
        return match.group(0) if value is None else value

    return PLACEHOLDER.sub(repl, text)


def root_name(name: str) -> str:
    """The variable a dotted placeholder reads (`email.subject` -> `email`)."""
    return name.split(".", 1)[0]
