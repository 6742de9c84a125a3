"""Reading values off the page for `extract` and `verify`: an element's text, the fields of
a record named by a schema, a pattern's match."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from playwright.async_api import Locator

from runner.errors import StepError


async def element_text(loc: Locator, wait_ms: float) -> str:
    text: str = await loc.evaluate(
        "e => (['INPUT', 'TEXTAREA', 'SELECT'].includes(e.tagName) ? e.value : e.innerText)",
        timeout=wait_ms,
    )
    return (text or "").strip()


SCHEMA_JS = r"""
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


def schema_keys(schema: Any) -> list[str]:
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


def apply_pattern(value: str | None, pattern: re.Pattern[str] | None) -> str | None:
    if value is None or pattern is None:
        return value
    m = pattern.search(value)
    if m is None:
        return None
    return m.group(1) if m.groups() else m.group(0)
