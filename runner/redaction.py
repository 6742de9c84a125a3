"""Secrets never leave the runner: one place that masks them and keeps them out of storage.

* :class:`Redactor` replaces every secret value (and its URL/JSON-encoded forms) with
  :data:`MASK` in a message, a log record or a JSON-like value.
* :class:`Secrets` is the execution's secret values with a deep redactor (keys included) for
  everything the engine writes out.
* :func:`templatize` puts ``{{name}}`` back where a secret's value appears, so a cached
  resolution stored in the database never holds a secret yet still replays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "\u2022" * 6  # what a secret looks like in every message


class Redactor:
    """Replaces every secret (and its URL/JSON-encoded forms) with ``••••••``."""

    def __init__(self, secrets: Iterable[str] | Mapping[str, str] = ()) -> None:
        values = secrets.values() if isinstance(secrets, Mapping) else secrets
        forms: set[str] = set()
        for raw in values:
            if not isinstance(raw, str) or not raw:
                continue
            forms.update({raw, quote(raw, safe=""), quote_plus(raw), json.dumps(raw)[1:-1]})
        self._forms = sorted((f for f in forms if f), key=len, reverse=True)

    def redact(self, text: Any) -> str:
        out = text if isinstance(text, str) else str(text)
        for form in self._forms:
            if form in out:
                out = out.replace(form, MASK)
        return out

    def redact_value(self, value: Any) -> Any:
        """Redact strings inside lists/dicts (extracted values, result payloads)."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list):
            return [self.redact_value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.redact_value(v) for k, v in value.items()}
        return value

    def logging_filter(self) -> logging.Filter:
        """A filter for the engine's handlers: redacts the formatted message of each record."""
        redactor = self

        class _Filter(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                record.msg = redactor.redact(record.getMessage())
                record.args = None
                return True

        return _Filter()


class Secrets:
    """The execution's secret values and a deep redactor for everything written out."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self._redactor = Redactor(self.values)

    def text(self, value: str) -> str:
        return self._redactor.redact(value)

    def deep(self, value: Any) -> Any:
        """Strings anywhere in a JSON-like value, keys included."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.deep(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value


def templatize(value: Any, secrets: Mapping[str, str]) -> Any:
    """Put ``{{name}}`` back where a secret's value appears, so a cached resolution (stored in
    the database) never holds a secret yet still replays."""
    if isinstance(value, str):
        for name, secret in sorted(secrets.items(), key=lambda kv: len(str(kv[1])),
                                   reverse=True):
            if secret:
                value = value.replace(str(secret), "{{" + name + "}}")
        return value
    if isinstance(value, dict):
        return {k: templatize(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [templatize(v, secrets) for v in value]
    return value
