"""SOP / JSON workflow -> AEF document. Pure: no I/O; the clock is read only if `now` is omitted.

The output is the input document, copied untouched, plus an `aef` section holding the
execution config, the *plan* (a tree of `PlanStep`s the runner executes in order) and the
plan's inputs. The phases: read the source format (`aef.sop_formats`), attach error handlers
(`aef.error_handlers`), place and order the nodes (`aef.ordering`), build the plan steps
(here), plan checkpoints (`aef.checkpoints`), list inputs (`aef.inputs`), warn (here),
estimate (`aef.estimate`). The rules are in docs/architecture.md, "Transform".
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aef import __version__
from aef.checkpoints import CheckpointPolicy, StepFacts
from aef.error_handlers import attach_error_handlers
from aef.errors import ValidationFailed
from aef.estimate import estimate_seconds
from aef.inputs import credential_config, plan_inputs, unproduced_loop_lists
from aef.models import (
    AefConfig,
    AefConfigPatch,
    AefSection,
    CheckpointConfig,
    DecisionSpec,
    LoopSpec,
    PlanInput,
    PlanStep,
    StepKind,
)
from aef.ordering import Item, Ordering, check_depth, listed_ids, raise_problems
from aef.placeholders import PLACEHOLDER, placeholder_names
from aef.plan import walk
from aef.sop_formats import SourceEdge, SourceGraph, SourceNode, read_source
from aef.sop_formats.graph import SourceFormat, is_rule, validate_model
from aef.url_policy import GuardPolicy, check_url

AEF_FORMAT_VERSION = "1.0"
TRANSFORMED_BY = f"aef.transform/{__version__}"

# Bounds that keep every input cheap to process and the output storable (Postgres jsonb).
MAX_JSON_DEPTH = 64
MAX_JSON_VALUES = 250_000
MAX_WARNINGS = 100


@dataclass(frozen=True)
class TransformResult:
    """The AEF document (JSON-ready, camelCase) plus what the API reports about it."""

    document: dict[str, Any]
    plan: list[PlanStep]
    inputs: list[PlanInput]
    warnings: list[str]
    estimated_step_count: int
    estimated_duration_seconds: int
    source_format: SourceFormat
    title: str | None


def transform(
    sop: Any,
    config: Mapping[str, Any] | AefConfigPatch | None = None,
    *,
    now: datetime | None = None,
    resolver: bool = False,
    url_policy: GuardPolicy | None = None,
) -> TransformResult:
    """Turn an SOP or JSON workflow document into an AEF document.

    `resolver`: a resolver is configured to compute data steps (`data_transform`,
    `generator`, `llm_call`, `filter_list`); without one a person does them. `url_policy`:
    the runner's network settings, to warn about navigations its guard will refuse (default:
    neither loopback nor private networks allowed).

    Raises `ValidationFailed` (and nothing else) for any input: bad shape, duplicate ids,
    dangling references, cycles outside loops, empty documents, unknown custom checkpoints.
    """
    try:
        policy: GuardPolicy = url_policy or _STRICT
        return _Transformer(sop, config, now, resolver, policy).run()
    except RecursionError:  # defensive: depths are bounded before anything recurses
        raise ValidationFailed("the document is nested too deeply") from None


_POLICY_HINTS = {
    "loopback": " (unless the runner allows loopback: AEF_ALLOW_LOOPBACK)",
    "private": " (unless the runner allows private networks: AEF_ALLOW_PRIVATE_NETWORKS)",
}


@dataclass
class _StrictPolicy:
    allow_loopback: bool = False
    allow_private_networks: bool = False


_STRICT = _StrictPolicy()


# --------------------------------------------------------------------------------------
# The transformer
# --------------------------------------------------------------------------------------


class _Transformer:
    def __init__(
        self,
        sop: Any,
        config: Mapping[str, Any] | AefConfigPatch | None,
        now: datetime | None,
        resolver: bool,
        url_policy: GuardPolicy,
    ) -> None:
        self.sop = sop
        self.config_in = config
        self.now = now
        self.resolver = resolver
        self.url_policy = url_policy
        self.warnings: list[str] = []
        self.nodes: dict[str, SourceNode] = {}
        self.edges: list[SourceEdge] = []
        self.duplicates: list[str] = []
        self.start_targets: list[str] = []
        self.runtime_vars: set[str] = set()
        self.facts: dict[str, StepFacts] = {}
        self.raw_reads: dict[str, list[str]] = {}

    def run(self) -> TransformResult:
        document = _checked_copy(self.sop)
        patch = _parse_config(self.config_in)
        graph = read_source(document)
        self.warnings.extend(graph.warnings)
        self.nodes, self.edges, self.duplicates = graph.nodes, graph.edges, graph.duplicates
        self.runtime_vars = graph.runtime_vars
        self._validate_graph()
        self.edges = attach_error_handlers(self.nodes, self.edges, self.start_targets)
        if not self.nodes:
            raise ValidationFailed("the document has only error handlers: there is nothing to run")
        self.order = Ordering(self.nodes, self.edges, self.start_targets, self.warnings)
        self.nodes = self.order.nodes
        config = _effective_config(patch, graph.defaults, self.warnings)
        custom = self._custom_checkpoints(config)
        plan = [self._plan_step(item, 0) for item in self.order.plan_scope(None, 0)]
        policy = CheckpointPolicy(config, custom, self.order.copies)
        policy.apply(plan, self.facts)
        if config.checkpoint_mode == "none" and policy.required_count:
            self.warnings.append(
                f"checkpointMode none: {policy.required_count} decision or manual "
                "checkpoint(s) remain because those steps cannot proceed without a person"
            )
        config.checkpoints = [
            CheckpointConfig(step_id=step.id, **step.checkpoint.model_dump())
            for step in walk(plan)
            if step.checkpoint is not None
        ]
        config.credentials, config.secrets = credential_config(plan)
        inputs = plan_inputs(plan, graph.declared, self.raw_reads)
        self._check_urls(plan)
        self._check_loops(plan, graph)
        transformed_at = (self.now or datetime.now(UTC)).astimezone(UTC)
        section = AefSection(
            config=config,
            plan=plan,
            inputs=inputs,
            transformed_at=transformed_at,
            transformed_by=TRANSFORMED_BY,
            version=AEF_FORMAT_VERSION,
        )
        if "aef" in document:
            self.warnings.append("the document's existing aef section was replaced")
        document["aef"] = section.model_dump(mode="json", by_alias=True)
        return TransformResult(
            document=document,
            plan=plan,
            inputs=inputs,
            warnings=_capped(self.warnings),
            estimated_step_count=sum(1 for _ in walk(plan)),
            estimated_duration_seconds=estimate_seconds(plan),
            source_format=graph.format,
            title=graph.title,
        )

    # -- loading ----------------------------------------------------------------------

    def _validate_graph(self) -> None:
        if not self.nodes:
            raise ValidationFailed("the document has no nodes: there is nothing to run")
        if self.duplicates:
            dups = sorted(set(self.duplicates))
            raise ValidationFailed(
                f"duplicate node ids: {listed_ids(dups)}", problems=["duplicate id"], ids=dups
            )
        problems: list[str] = []
        ids: list[str] = []
        known = self.nodes
        kept: list[SourceEdge] = []
        for e in self.edges:
            if e.source not in known and e.source.strip().lower() == "start":
                if e.target in known:
                    self.start_targets.append(e.target)
                    continue
            bad = [x for x in (e.source, e.target) if x not in known]
            if bad:
                problems.append(f"edge {e.source} → {e.target} refers to unknown node {bad[0]}")
                ids.extend(bad)
            else:
                kept.append(e)
        self.edges = kept
        for node in known.values():
            if node.declared_parent is not None and node.declared_parent not in known:
                problems.append(f"node {node.id} has unknown parentId {node.declared_parent}")
                ids.append(node.declared_parent)
            for child in node.declared_children:
                if child not in known:
                    problems.append(f"node {node.id} lists unknown child {child}")
                    ids.append(child)
        raise_problems(problems, ids)

    def _plan_step(self, item: Item, depth: int) -> PlanStep:
        check_depth(depth, item.id)
        node = self.nodes[item.id]
        # A start/trigger marker is an empty group: the runner completes it without acting.
        kind: StepKind = "compound" if node.kind == "noop" else node.kind  # type: ignore[assignment]
        children: list[PlanStep] = []
        if node.kind in ("compound", "loop"):
            children = [
                self._plan_step(sub, depth + 1)
                for sub in self.order.plan_scope(node.id, depth + 1)
            ]
        decision = None
        if kind == "decision":
            decision = DecisionSpec(
                question=node.question
                or (node.label if node.label.endswith("?") else (node.intent or node.label)),
                rule=node.rule,
                yes=[self._plan_step(s, depth + 1) for s in item.yes or []],
                no=[self._plan_step(s, depth + 1) for s in item.no or []],
            )
        computed = node.compute is not None and kind == "task"
        if computed and not self.resolver:
            self.warnings.append(
                f"step {node.id}: a {node.type} step needs a resolver to compute "
                f"{node.compute.output!r} and none is configured; a person does it at a "  # type: ignore[union-attr]
                "manual checkpoint"
            )
        manual = (node.manual or (computed and not self.resolver)) and kind in ("task", "manual")
        if manual:
            kind = "manual"
        actions = [] if manual else node.actions
        if manual:
            method = "manual"
        elif computed:
            method = "resolver"
        elif actions or kind != "task":
            method = "automated"
        else:
            method = "grounded"
        instruction = None if actions else _instruction(node)
        loop = None
        if kind == "loop" and node.loop is not None:
            exit_condition = node.loop.exit_condition
            candidates = [
                *self.order.exit_conditions.get(node.id, []),
                *(_negated(c) for c in self.order.continue_conditions.get(node.id, [])),
            ]
            if exit_condition is None:
                exit_condition = next((c for c in candidates if is_rule(c)), None)
            loop = LoopSpec(
                iterator=node.loop.iterator,
                over=node.loop.over,
                max_iterations=node.loop.max_iterations,
                exit_condition=exit_condition,
            )
        self.facts[node.id] = StepFacts(
            text=f"{node.label} {node.intent}".strip(),
            writes_record=node.risky_action,
            human_checkpoint=node.human_checkpoint,
        )
        credentials, self.raw_reads[node.id] = self._step_names(node)
        return PlanStep(
            id=node.id,
            label=node.label,
            kind=kind,
            method=method,  # type: ignore[arg-type]
            actions=actions,
            instruction=instruction,
            children=children,
            loop=loop,
            decision=decision,
            credentials=credentials,
            recovery=node.recovery,
            compute=node.compute if computed else None,
        )

    def _step_names(self, node: SourceNode) -> tuple[list[str], list[str]]:
        """(credentials, every placeholder) of the node: credentials are the placeholders no
        run sets (declared variables, loop items, extract and compute results) plus
        `credentialsRequired` and `credentialField`s."""
        names = list(node.credentials)
        raw = node.raw
        if node.compute is not None and isinstance(raw, dict):  # its own template, not the run's
            raw = {k: v for k, v in raw.items() if k not in ("promptTemplate", "listConfig")}
        text = json.dumps(raw, ensure_ascii=False)
        found = placeholder_names(text)
        names += [n for n in found if "." not in n and n not in self.runtime_vars]
        return list(dict.fromkeys(n for n in names if n)), found

    def _check_urls(self, plan: list[PlanStep]) -> None:
        """Warn about each URL the runner's network guard will refuse (aef.url_policy). A URL
        whose scheme or host is a placeholder is judged only when the run fills it in."""
        for step in walk(plan):
            for action in step.actions:
                url = action.url or (action.value if action.type == "navigate" else None)
                if not url or _host_is_placeholder(url):
                    continue
                verdict = check_url(PLACEHOLDER.sub("x", url), self.url_policy)
                if verdict.allowed:
                    continue
                hint = _POLICY_HINTS.get(verdict.category, "")
                self.warnings.append(
                    f"step {step.id}: the runner's network guard will refuse {action.type} to "
                    f"{url[:200]!r}: {verdict.reason}{hint}"
                )

    def _check_loops(self, plan: list[PlanStep], graph: SourceGraph) -> None:
        known = set(graph.declared) | graph.external
        for step, over in unproduced_loop_lists(plan, known):
            self.warnings.append(
                f"step {step.id}: the loop iterates the list {over!r}, which no earlier step "
                "produces and the document does not declare; the run stops there unless a "
                "step before the loop extracts it"
            )

    def _custom_checkpoints(self, config: AefConfig) -> set[str]:
        """Every node becomes exactly one plan step, so node ids are the step ids."""
        if config.checkpoint_mode != "custom":
            return set()
        unknown = [s for s in config.custom_checkpoints if s not in self.nodes]
        if unknown:
            raise ValidationFailed(
                f"customCheckpoints names unknown step ids: {listed_ids(unknown)}", ids=unknown
            )
        return set(config.custom_checkpoints)


# --------------------------------------------------------------------------------------
# Helpers (pure functions)
# --------------------------------------------------------------------------------------




_CONTAINERS = (dict, list)


def _checked_copy(sop: Any) -> dict[str, Any]:
    """Refuse what is not a storable JSON object, and copy it so the caller's stays intact."""
    if not isinstance(sop, dict):
        raise ValidationFailed("the document must be a JSON object")
    count = 0
    stack: list[tuple[Any, int]] = [(sop, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValidationFailed(f"the document is nested more than {MAX_JSON_DEPTH} levels")
        children = value.values() if type(value) is dict else value
        count += len(children)
        stack.extend((child, depth + 1) for child in children if type(child) in _CONTAINERS)
        if count > MAX_JSON_VALUES:
            raise ValidationFailed(f"the document has more than {MAX_JSON_VALUES} values")
    try:
        text = json.dumps(sop, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"the document is not plain JSON: {exc}") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationFailed("the document contains invalid Unicode (a lone surrogate)") from None
    if "\\u0000" in text:
        raise ValidationFailed("the document contains a NUL character, which cannot be stored")
    copied: dict[str, Any] = json.loads(text)
    return copied


def _parse_config(config: Mapping[str, Any] | AefConfigPatch | None) -> AefConfigPatch:
    if config is None:
        return AefConfigPatch()
    if isinstance(config, AefConfigPatch):
        return config
    if not isinstance(config, Mapping):
        raise ValidationFailed("config must be a JSON object")
    return validate_model(AefConfigPatch, dict(config), root="config")


def _effective_config(
    patch: AefConfigPatch, defaults: dict[str, Any], warnings: list[str]
) -> AefConfig:
    values = dict(defaults)
    values.update(patch.model_dump(exclude_none=True))
    given = patch.model_fields_set
    if "checkpoint_mode" not in given and patch.custom_checkpoints:
        values["checkpoint_mode"] = "custom"
    if values.get("checkpoint_mode", "risky_steps") != "custom" and patch.custom_checkpoints:
        warnings.append(f"customCheckpoints ignored: checkpointMode is {values['checkpoint_mode']}")
        values["custom_checkpoints"] = []
    return AefConfig(**values)



def _capped(warnings: list[str]) -> list[str]:
    if len(warnings) <= MAX_WARNINGS:
        return warnings
    kept = warnings[: MAX_WARNINGS - 1]
    return [*kept, f"... and {len(warnings) - len(kept)} more warnings"]


def _instruction(node: SourceNode) -> str:
    head = node.intent or node.label
    return f"{head}\n\n{node.context}" if node.context else head


def _negated(condition: str) -> str:
    condition = condition.strip()
    return f"not {condition}" if re.fullmatch(r"[\w.]+", condition) else f"not ({condition})"


def _host_is_placeholder(url: str) -> bool:
    """Whether the scheme or host of `url` comes from a placeholder (`{{base_url}}/inbox`)."""
    head = url.split("{{", 1)[0]
    if "{{" not in url:
        return False
    if "://" not in head:
        return True
    authority = head.split("://", 1)[1]
    return not any(c in authority for c in "/?#")
