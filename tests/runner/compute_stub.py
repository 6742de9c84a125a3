"""A stand-in for a configured resolver that can compute data steps (AEF_LLM_RESOLVER).

It grounds nothing (every instruction escalates) and computes from a fixed rule: upper-case
the input. Enough to prove how the engine hands a data step over and stores its result.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page

from aef.models import ComputeSpec
from runner.grounding import Escalation, Resolution


class ComputeStub:
    def __init__(self, settings: Any) -> None:
        self.settings = settings

    async def resolve(self, page: Page, instruction: str) -> Resolution | Escalation:
        return Escalation("the stub grounds nothing", instruction)

    async def compute(self, spec: ComputeSpec, data: Any, page: Page) -> Any:
        if "secret" in str(data):
            raise AssertionError("secrets must never reach a resolver")
        return str(data).upper()
