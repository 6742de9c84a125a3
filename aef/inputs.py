"""What a plan reads and writes: its inputs (variables and credentials), checked before a run.

A step *reads* the `{{name}}` placeholders of its actions and instruction, its loop's list,
its decision rule's variables and its computation's input; it *writes* its extract and
download variables, its computation's output, and (for its body) its loop's item. A name read
that no step writes is an *input*: a `variable` when the document declares it (a workflow's
`execution.variables`, an SOP's `public.variables`), else a `credential` (a secret). The
transform lists them in `aef.inputs`; `POST /execute` refuses a run whose selected steps read
an input the caller did not give (docs/architecture.md, "Inputs").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from aef import rules
from aef.models import (
    AefConfig,
    PlanInput,
    PlanStep,
    SecretConfig,
    WorkflowCredential,
)
from aef.placeholders import placeholder_names, root_name
from aef.plan import walk

_MAX_LISTED = 10


def step_reads(step: PlanStep) -> list[str]:
    """The names `step` itself reads when it runs (not its nested steps), in order."""
    texts = [step.instruction or ""]
    for a in step.actions:
        texts += [a.url or "", a.value or "", a.selector or "", a.instruction or "", a.key or "",
                  a.url_contains or ""]
    names = [n for text in texts for n in placeholder_names(text)]
    if step.loop is not None and step.loop.over:
        names.append(step.loop.over)
    if step.decision is not None and step.decision.rule:
        try:
            names += sorted(rules.parse(step.decision.rule).variables)
        except rules.RuleError:
            pass
    if step.compute is not None and step.compute.input:
        names.append(step.compute.input)
    return list(dict.fromkeys(names))


def step_writes(step: PlanStep) -> list[str]:
    """The variables `step` sets for the steps after it (a loop's item only for its body)."""
    names = [a.variable for a in step.actions if a.type in ("extract", "download") and a.variable]
    if step.compute is not None:
        names.append(step.compute.output)
    return names


def plan_writes(plan: Iterable[PlanStep]) -> set[str]:
    written: set[str] = set()
    for step in walk(plan):
        written.update(step_writes(step))
        if step.loop is not None:
            written.add(step.loop.iterator)
    return written


def plan_inputs(
    plan: list[PlanStep], declared: Mapping[str, Any], raw_reads: Mapping[str, list[str]]
) -> list[PlanInput]:
    """The inputs of a plan, in order of first use: the credentials its steps list and the
    declared variables they read (`raw_reads`: placeholders anywhere in each source node)
    that no step writes."""
    written = plan_writes(plan)
    found: dict[str, PlanInput] = {}
    for step in walk(plan):
        reads = [*raw_reads.get(step.id, []), *step_reads(step)]
        for name in dict.fromkeys(root_name(n) for n in reads):
            if name in declared and name not in written:
                _require(found, name, "variable", step.id, declared[name])
        for name in step.credentials:
            _require(found, name, "credential", step.id, None)
    return list(found.values())


def _require(found: dict[str, PlanInput], name: str, kind: str, step_id: str,
             declaration: Any) -> None:
    entry = found.get(name)
    if entry is None:
        example, description = _declaration(declaration)
        entry = found[name] = PlanInput(
            name=name, kind=kind, example=example, description=description  # type: ignore[arg-type]
        )
    if step_id not in entry.required_by:
        entry.required_by.append(step_id)


def _declaration(value: Any) -> tuple[str | None, str | None]:
    """(example, description) of a declared variable: a string is its description; an object
    may give `example` (or `default`) and `description`."""
    if isinstance(value, str):
        return None, value or None
    if not isinstance(value, Mapping):
        return None, None
    example = value.get("example", value.get("default"))
    description = value.get("description")
    if example is not None and not isinstance(example, str):
        example = json.dumps(example, ensure_ascii=False)
    return example, description if isinstance(description, str) and description else None


def unproduced_loop_lists(
    plan: list[PlanStep], known: set[str]
) -> list[tuple[PlanStep, str]]:
    """Loops over a list no earlier step writes and `known` (declared or set outside the
    steps) does not name: the runner stops there with "the loop's list is not set"."""
    problems: list[tuple[PlanStep, str]] = []

    def visit(steps: list[PlanStep], written: set[str]) -> set[str]:
        for step in steps:
            if step.loop is not None and step.loop.over:
                if root_name(step.loop.over) not in written | known:
                    problems.append((step, step.loop.over))
            written = written | set(step_writes(step))
            if step.loop is not None:
                written = written | (visit(step.children, written | {step.loop.iterator})
                                     - {step.loop.iterator})
            elif step.decision is not None:
                yes = visit(step.decision.yes, written)
                no = visit(step.decision.no, written)
                written = yes | no
            else:
                written = visit(step.children, written)
        return written

    visit(plan, set())
    return problems


# --- before a run ---------------------------------------------------------------------------


def stored_inputs(document: Mapping[str, Any]) -> list[PlanInput]:
    """The inputs an AEF document lists (`aef.inputs`); a document transformed before inputs
    were listed yields its credentials (`aef.config.credentials`)."""
    section = document.get("aef")
    if not isinstance(section, Mapping):
        return []
    if "inputs" in section:
        return [PlanInput.model_validate(i) for i in section.get("inputs") or []]
    config = AefConfig.model_validate(section.get("config") or {})
    return [
        PlanInput(name=c.id, kind="credential", required_by=list(c.required_for_steps))
        for c in config.credentials
    ]


def missing_inputs(
    plan: list[PlanStep],
    inputs: list[PlanInput],
    provided: set[str],
    selected: set[str] | None,
) -> list[PlanInput]:
    """Every input the run needs and `provided` lacks. With a step selection (`selected`),
    only inputs its steps read, plus the variables they read that only unselected steps
    write (a loop's item, an earlier extract), which the caller must then give as well."""
    missing = [
        i for i in inputs
        if i.name not in provided and (selected is None or set(i.required_by) & selected)
    ]
    if selected is None:
        return missing
    written_by_plan = plan_writes(plan)
    listed = {i.name for i in inputs}
    extra: dict[str, PlanInput] = {}
    available: set[str] = set(provided)

    def visit(steps: list[PlanStep]) -> None:
        for step in steps:
            chosen = step.id in selected
            if chosen:
                available.update(step_writes(step))
                for name in step_reads(step):
                    root = root_name(name)
                    if (root in written_by_plan and root not in available
                            and name not in available and root not in listed):
                        _require(extra, root, "variable", step.id, None)
            if step.loop is not None and chosen:
                available.add(step.loop.iterator)
            visit(step.children)
            if step.decision is not None:
                visit(step.decision.yes)
                visit(step.decision.no)

    visit(plan)
    return [*missing, *extra.values()]


def unused_names(plan: list[PlanStep], inputs: list[PlanInput], provided: Iterable[str]
                 ) -> list[str]:
    """Provided names that neither an input nor any step of the plan reads."""
    read = {i.name for i in inputs}
    for step in walk(plan):
        for name in step_reads(step):
            read.update((name, root_name(name)))
    return sorted(set(provided) - read)


# --- the config's credential and secret lists ----------------------------------------------


def credential_config(plan: list[PlanStep]) -> tuple[list[WorkflowCredential], list[SecretConfig]]:
    """`config.credentials` (every credential, required) and `config.secrets` (passwords,
    API keys and tokens) from the credentials the plan's steps list."""
    steps_by_name: dict[str, list[str]] = {}
    for step in walk(plan):
        for name in step.credentials:
            steps_by_name.setdefault(name, []).append(step.id)
    credentials: list[WorkflowCredential] = []
    secrets: list[SecretConfig] = []
    for name, step_ids in steps_by_name.items():
        cred_type = _credential_type(name)
        service = name.split("_", 1)[0].lower() if "_" in name else "custom"
        label = _humanize(name)
        sensitive = cred_type in ("password", "api_key", "oauth_token")
        credentials.append(
            WorkflowCredential(
                id=name,
                service_type=service,
                label=label,
                description=f"Substituted for {{{{{name}}}}} in {_names(step_ids)}",
                type=cred_type,  # type: ignore[arg-type]
                required=True,
                required_for_steps=step_ids,
                placeholder=f"{{{{{name}}}}}",
                masked=sensitive,
            )
        )
        if sensitive:
            secrets.append(
                SecretConfig(
                    id=name,
                    name=label,
                    description=f"Secret value for {{{{{name}}}}}; never logged or shown",
                    type=cred_type,  # type: ignore[arg-type]
                    required=True,
                    step_ids=step_ids,
                )
            )
    return credentials, secrets


def _names(ids: list[str]) -> str:
    shown = ", ".join(ids[:_MAX_LISTED])
    more = len(ids) - _MAX_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def _credential_type(name: str) -> str:
    lowered = name.lower()
    if "password" in lowered or "passwd" in lowered:
        return "password"
    if "api_key" in lowered or "apikey" in lowered or lowered.endswith("_key"):
        return "api_key"
    if "token" in lowered or "secret" in lowered:
        return "oauth_token"
    if "email" in lowered:
        return "email"
    if lowered.endswith("url"):
        return "url"
    return "text"


def _humanize(name: str) -> str:
    words = re.split(r"[_.\-]+", name)
    special = {"api": "API", "id": "ID", "url": "URL", "sso": "SSO", "2fa": "2FA"}
    return " ".join(special.get(w.lower(), w.capitalize()) for w in words if w)
