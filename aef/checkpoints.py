"""Planned checkpoints: which steps a person approves before they run, judged by unit of work.

A *unit of work* commits something: field writes followed by a save or submit (or a single
irreversible action: send, delete, pay). The unit gets one `before_step` checkpoint on its
first step whose `covers` lists every step of the unit, and its other steps get none, so a
person approves the whole record write at once instead of some of its field writes.
Navigation, opening a dialog, searching and reading are not risky; field writes that are
never committed (a login form, a search box) are not either. The rules are in
docs/architecture.md, "Risk and units of work".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from aef.models import Action, AefConfig, PlanStep, StepCheckpoint
from aef.placeholders import PLACEHOLDER
from aef.plan import walk

Mark = Literal["write", "commit", "commit_if_writes", "leave", "neutral"]

_COMMITS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bsubmit(?:s|ting|ted)?\b", re.I), "submits something"),
    (re.compile(r"\bsend(?:s|ing)?\b", re.I), "sends something"),
    (
        re.compile(r"\b(?:delete[sd]?|deleting|remov(?:e|es|ing)|trash(?:es|ing)?|erase)\b", re.I),
        "deletes data",
    ),
    (
        re.compile(
            r"\b(?:pay(?:s|ing|ment)?|purchase[sd]?|buy(?:s|ing)?|checkout|transfer(?:s)?)\b", re.I
        ),
        "makes a payment",
    ),
    (re.compile(r"\b(?:sav(?:e|es|ed|ing)|publish(?:es|ing)?)\b", re.I), "saves a record"),
]
_RECORD_WRITE = re.compile(
    r"\b(?:creat(?:e|es|ing)|add(?:s|ing)?|insert(?:s|ing)?|updat(?:e|es|ing)|edit(?:s|ing)?|"
    r"modif(?:y|ies|ying)|overwrit(?:e|es|ing)|append(?:s|ing)?|fill(?:s|ing)? out)\b"
    r"[^.;]{0,60}?\b(?:records?|rows?|entry|entries|contacts?|leads?|deals?|crm|database|"
    r"tables?|investors?|customers?|accounts?)\b",
    re.I,
)
_FIELD_WRITE = re.compile(
    r"\b(?:type|fill|enter|set|select|choose|check|tick|populat(?:e|es|ing)|updat(?:e|es|ing)|"
    r"add|append|edit|modif(?:y|ies)|chang(?:e|es)|write|input)\b"
    r"[^.;]{0,60}?\b(?:fields?|boxe?s?|checkbox(?:es)?|inputs?|forms?|columns?|cells?|dates?|"
    r"notes?|values?|dropdowns?)\b",
    re.I,
)
_LOOKING = re.compile(r"\b(?:search(?:es|ing)?|filter|find|query|look up|lookup)\b", re.I)
# A step whose label starts with one of these opens, moves or reads: it commits nothing.
_OPENING = frozenset(
    {"open", "opens", "expand", "view", "show", "display", "navigate", "go", "switch", "return",
     "find", "search", "locate", "look", "read", "extract", "collect", "scan", "wait", "verify",
     "review", "login", "log", "sign"}
)
_WRITE_ACTIONS = frozenset({"fill", "type", "select", "check", "uncheck", "upload"})
_READ_ACTIONS = frozenset({"wait", "extract", "verify", "scroll", "download"})


@dataclass(frozen=True)
class StepFacts:
    """What the plan step does not keep but risk is judged by: the node's label and intent,
    whether a source action writes a record by itself (`create_row`, `update_row`, `upload`),
    and whether the source asks for a human checkpoint."""

    text: str
    writes_record: bool = False
    human_checkpoint: bool = False


@dataclass
class Unit:
    """Steps from the first write to the commit, in run order."""

    covers: list[str] = field(default_factory=list)
    risky: set[str] = field(default_factory=set)
    reason: str = "creates or updates a record"
    closed: bool = False

    def add(self, step_id: str, risky: bool) -> None:
        if step_id not in self.covers:
            self.covers.append(step_id)
        if risky:
            self.risky.add(step_id)


def commit_reason(text: str) -> str | None:
    """Why `text` describes an irreversible action, or None."""
    for pattern, reason in _COMMITS:
        if pattern.search(text):
            return reason
    return None


def _plain(text: str) -> str:
    """The text with each placeholder as one word, so `{{a.b}}` does not end a sentence."""
    return PLACEHOLDER.sub("value", text)


def _action_mark(action: Action) -> Mark:
    text = _plain(" ".join(x for x in (action.instruction, action.selector, action.value) if x))
    instruction = _plain(action.instruction or "")
    if action.type == "navigate":
        return "leave"
    if action.type in _READ_ACTIONS:
        return "neutral"
    if commit_reason(instruction):
        return "commit"
    if _LOOKING.search(text):
        return "neutral"
    if action.type in _WRITE_ACTIONS or (action.type == "act" and _FIELD_WRITE.search(text)):
        return "write"
    if _RECORD_WRITE.search(instruction):
        return "commit_if_writes"
    return "neutral"


def _step_marks(step: PlanStep, facts: StepFacts | None) -> list[Mark]:
    """The step's writes and commits in order: its actions', then what its label and intent
    say when the actions do not say it themselves."""
    marks = [_action_mark(a) for a in step.actions]
    if step.kind not in ("task", "manual"):  # a container is judged by its steps
        return marks
    text = _plain(facts.text if facts else step.label)
    words = text.split()
    opening = bool(words) and words[0].lower() in _OPENING
    if facts is not None and facts.writes_record:
        return ["write", *marks, "commit"]
    if opening or step.compute is not None:
        return marks
    has_commit = "commit" in marks
    if commit_reason(text) and not has_commit:
        return [*marks, "commit"]
    if _RECORD_WRITE.search(text) and not has_commit:
        return ["write", *marks, "commit"]
    if not marks and _FIELD_WRITE.search(text) and not _LOOKING.search(text):
        return ["write"]
    return marks


class _UnitFinder:
    """Follows the plan in run order with the units still open (writes not yet committed);
    a decision's branches each continue the open units, a loop body starts with none."""

    def __init__(self, facts: Mapping[str, StepFacts]) -> None:
        self.facts = facts
        self.units: dict[str, Unit] = {}  # by the id of the unit's first step

    def run(self, steps: Iterable[PlanStep], open_units: list[Unit]) -> list[Unit]:
        for step in steps:
            open_units = self._leaf(step, open_units)
            if step.loop is not None:
                self.run(step.children, [])
            elif step.decision is not None:
                yes = self.run(step.decision.yes, list(open_units))
                no = self.run(step.decision.no, list(open_units))
                open_units = [*yes, *(u for u in no if u not in yes)]
            elif step.children:
                open_units = self.run(step.children, open_units)
        return open_units

    def _leaf(self, step: PlanStep, open_units: list[Unit]) -> list[Unit]:
        facts = self.facts.get(step.id)
        marks = _step_marks(step, facts)
        if not marks and step.kind in ("task", "manual"):
            marks = ["neutral"]  # a step between a write and its commit is part of the unit
        for mark in marks:
            if mark == "leave":  # a navigation drops what was typed and not saved
                open_units = []
            elif mark == "write":
                if not open_units:
                    unit = self.units.setdefault(step.id, Unit())
                    open_units = [unit]
                for unit in open_units:
                    unit.add(step.id, True)
            elif mark == "commit" or (mark == "commit_if_writes" and open_units):
                if not open_units:
                    open_units = [self.units.setdefault(step.id, Unit())]
                reason = commit_reason(" ".join(a.instruction or "" for a in step.actions))
                reason = reason or commit_reason(facts.text if facts else step.label)
                for unit in open_units:
                    unit.add(step.id, True)
                    unit.closed = True
                    if reason and reason != "saves a record":
                        unit.reason = reason
                open_units = []
            else:
                for unit in open_units:
                    unit.add(step.id, False)
        return open_units


def find_units(plan: list[PlanStep], facts: Mapping[str, StepFacts]) -> dict[str, Unit]:
    """The committed units of the plan, by the id of their first step."""
    finder = _UnitFinder(facts)
    finder.run(plan, [])
    return {first: unit for first, unit in finder.units.items() if unit.closed}


class CheckpointPolicy:
    """Sets each step's `checkpoint` and `risky` for the config's `checkpointMode`."""

    def __init__(self, config: AefConfig, custom: set[str], copies: Mapping[str, str]) -> None:
        self.mode = config.checkpoint_mode
        self.timeout = config.checkpoint_timeout
        # what an unanswered before_step or manual checkpoint does (default: pause the run)
        self.on_timeout = config.checkpoint_timeout_action
        self.custom = custom
        self.copies = copies  # a step copied into a second branch -> the source node id
        self.required_count = 0

    def apply(self, plan: list[PlanStep], facts: Mapping[str, StepFacts]) -> None:
        units = find_units(plan, facts)
        in_unit = {s for unit in units.values() for s in unit.covers[1:]}
        risky = {s for unit in units.values() for s in unit.risky}
        for step in walk(plan):
            unit = units.get(step.id)
            step.risky = step.id in risky
            human = step.id not in in_unit and bool(
                (f := facts.get(step.id)) and f.human_checkpoint
            )
            step.checkpoint = self._checkpoint_for(step, unit, human, step.id in in_unit)

    def _checkpoint_for(
        self, step: PlanStep, unit: Unit | None, human_checkpoint: bool, inside_unit: bool
    ) -> StepCheckpoint | None:
        covers = list(unit.covers) if unit is not None else [step.id]
        cp = self._required(step, covers)
        if cp is not None:
            self.required_count += 1
            return cp
        if self.mode == "risky_steps":
            wanted = unit is not None or human_checkpoint
        elif self.mode == "all_steps":
            wanted = step.kind in ("task", "manual", "decision")
        elif self.mode == "custom":
            wanted = step.id in self.custom or self.copies.get(step.id) in self.custom
        else:
            wanted = False
        if not wanted:
            return None
        if unit is None and step.risky and inside_unit:
            return self._before(step, [step.id], "is part of a record write")
        if unit is None:
            return self._before(step, covers, None)
        return self._before(step, covers, unit.reason)

    def _required(self, step: PlanStep, covers: list[str]) -> StepCheckpoint | None:
        if step.method == "manual":
            return StepCheckpoint(
                type="manual",
                title=f"Manual step: {step.label}",
                description=_manual_description(step),
                timeout_seconds=self.timeout,
                default_action=self.on_timeout,
                covers=covers,
            )
        if step.decision is not None and step.decision.rule is None:
            yes = step.decision.yes[0].label if step.decision.yes else "continue"
            no = step.decision.no[0].label if step.decision.no else "continue"
            return StepCheckpoint(
                type="decision",
                title=step.decision.question,
                description=(
                    "No rule can decide this automatically. "
                    f"Approve = yes ({yes}); reject = no ({no}). "
                    "Without an answer the no branch is taken."
                ),
                timeout_seconds=self.timeout,
                default_action="reject",
                covers=covers,
            )
        return None

    def _before(self, step: PlanStep, covers: list[str], risk: str | None) -> StepCheckpoint:
        what = step.instruction or "; ".join(a.instruction or a.type for a in step.actions)
        what = what.strip().rstrip(".") or step.label
        title = f"Approve: {step.label}"
        if risk is not None and len(covers) > 1:
            description = (
                f"These {len(covers)} steps run as one unit that {risk} and may not be "
                f"reversible: {'; '.join(covers)}. They run only after approval."
            )
        elif risk is not None:
            description = (
                f"This step {risk} and may not be reversible: {what}. It runs only after approval."
            )
        else:
            description = f"Review before it runs: {what}."
        return StepCheckpoint(
            type="before_step",
            title=title,
            description=description,
            timeout_seconds=self.timeout,
            default_action=self.on_timeout,
            covers=covers,
        )


def _manual_description(step: PlanStep) -> str:
    if step.compute is not None:
        return (
            f"No resolver is configured to compute this, so a person does it: "
            f"{step.compute.instruction}\n\nApprove once done, with the result in the "
            f"answer's data as {step.compute.output!r}. Reject if it cannot be done."
        )
    return (
        f"{step.instruction or step.label}\n\nDo this in the browser (take over), "
        "then approve. Reject if it cannot be done."
    )
