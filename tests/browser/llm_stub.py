"""A stand-in for an LLM-backed resolver, loaded through ``settings.llm_resolver``.

It answers from a fixed table so the chain's rules (grounding first, only unique and
confident answers, otherwise escalate) can be tested without a model.
"""

from __future__ import annotations

from typing import Any, ClassVar

from playwright.async_api import Page

from runner.grounding import Escalation, Resolution

NOT_A_RESOLVER = object()


class StubResolver:
    calls: ClassVar[list[str]] = []

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    async def resolve(self, page: Page, instruction: str) -> Resolution | Escalation:
        self.calls.append(instruction)
        table = {
            "Click the round thing at the top": ({"strategy": "testid", "value": "settings"}, 0.9),
            # Both Delete buttons match: the chain must refuse it.
            "Click Delete": ({"strategy": "role", "role": "button", "name": "Delete"}, 0.95),
            "Click Learn more": ({"strategy": "testid", "value": "learn-1"}, 0.4),
        }
        if instruction not in table:
            return Escalation("stub does not know", instruction)
        locator, confidence = table[instruction]
        return Resolution("click", locator, None, confidence, "llm", "stub", instruction)
