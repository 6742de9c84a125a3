"""Typing as a person does, in chunks a stop can cut short (the `type` action, a takeover)."""

from __future__ import annotations

from typing import Final

from playwright.async_api import Keyboard, Locator, Page

TYPE_CHUNK: Final = 32  # keys per driver call: a stop lands between two chunks (< 1 s)


TYPE_KEYS_MAX: Final = 256  # longer values are filled, and only their tail is typed


CARET_TO_END: Final = """el => {
  if (typeof el.selectionStart === 'number') {
    el.selectionStart = el.selectionEnd = el.value.length;
  } else if (el.isContentEditable) {
    const range = document.createRange();
    range.selectNodeContents(el);
    range.collapse(false);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  }
}"""


async def type_keys(keyboard: Keyboard, text: str, *, delay: float = 0) -> None:
    """Type `text` as key presses in short chunks: one driver call for a long text keeps the
    browser typing after the runner was told to stop; chunks give the stop a way in."""
    for start in range(0, len(text), TYPE_CHUNK):
        await keyboard.type(text[start:start + TYPE_CHUNK], delay=delay)


async def type_text(page: Page, loc: Locator, value: str, *, timeout_ms: float) -> None:
    """`type`: key by key like a person (pages that listen to key events see them). A long
    value is filled first and only its last keys are typed: 10,000 characters at 15 ms a key
    would hold the step for minutes."""
    head, tail = (value[:-TYPE_CHUNK], value[-TYPE_CHUNK:]) if len(value) > TYPE_KEYS_MAX \
        else ("", value)
    await loc.fill(head, timeout=timeout_ms)
    await loc.focus(timeout=timeout_ms)
    if head:
        await loc.evaluate(CARET_TO_END)
    await type_keys(page.keyboard, tail, delay=15)
