"""SOP / JSON workflow -> AEF document. Pure: no I/O; the clock is read only if `now` is omitted.

The output is the input document, copied untouched, plus an `aef` section holding the
execution config and the *plan*: a tree of `PlanStep`s the runner executes in order
(docs/architecture.md, "Plan").

How the plan is built
- **Format.** `public.nodes` is an SOP (v0.8, and older v0.6 documents); `execution.workflow`
  is a JSON workflow. Both are reduced to the same node/edge graph.
- **Hierarchy.** A node belongs to the node whose `children` lists it or that its `parentId`
  names. A top-level node that is reached only from inside one container (v0.6 documents
  forget to list such nodes) is placed in that container, with a warning.
- **Order comes from edges**, scope by scope (the top level, then each container's body).
  An edge between nodes of different scopes counts as an edge between their ancestors in
  the innermost common scope. An edge from a container to one of its descendants marks where
  its body starts; an edge back to an enclosing *loop* ends the iteration. Within a scope the
  walk starts at the marked entries, else at nodes nothing leads to, else (a loop body that is
  one big cycle, as in v0.8) at its first child. Ties are broken by `children` order, then
  `id_path`, then document order.
- **Decisions** get `yes`/`no` branches from edge labels (`decision_path` Y/N or `condition`
  yes/no/true/false, or a workflow's `outboundEdges`); both branches run up to the first node
  they share, where the main sequence resumes. A node reached by no edge in its scope is
  appended to the scope's sequence, so every node appears in the plan exactly once.
- **Cycles** are refused unless they return to the start of a loop body or to the loop itself.

Workflow actions are read in both shapes: the documented flat `Action` fields (`url`,
`selector`, `value`, `key`, `timeoutMs`, `urlContains`, `attribute`, `many`, `state`,
`pattern`, `variable`) and the nested fixture shape (`target.url|selector|urlContains`,
`data`, `timeout`); a flat field wins. Extract results land in `variable` (default: the step
id), which is also how the runner names them, so `{{variable}}` and rules can read them.

Step semantics (for the runner)
- `method=automated`: run `actions` in order. Structural steps (compound, loop, decision,
  end) without own actions are `automated` with no actions: there is nothing to do for the
  step itself (a compound or loop runs its `children`, a decision picks a branch).
- `method=grounded`: no concrete actions; resolve `instruction` (intent + context) on the page.
- `method=manual`: a person does it; the step always carries a `manual` checkpoint.
- `decision.rule` is null unless the document gives one that `aef.rules` parses (its `rule`
  field). A workflow decision whose `conditionSchema` has a single boolean property that the
  node's own extract action returns gets the rule `<variable>.<property>`, where extract
  results are stored under `variable` (default: the step id). `decision.question` is the
  node's `question`, else its label when that is a question, else its intent.
- `loop`: run `children` once per item of the list variable `over`, binding the item to
  `iterator`, at most `maxIterations` times (default 50). For an SOP, `over` is the plural of
  its `iterator` (`email` -> `emails`) unless the node names it in `over`;
  a workflow loop names `over`/`iterator`/`maxIterations` on the node (or `listVariable`/
  `itemVariable`/`maxIterations` in `iteratorConfig`, the node's own fields winning); without one
  `over` is null: repeat until `exitCondition` holds. `exitCondition` is the node's
  `exit_condition`, else a condition on the loop's exit edge, else the negated condition of
  the edge back into the loop, kept only if `aef.rules` parses it.
- Start/trigger marker nodes become empty `compound` steps: there is nothing to run.
- `credentials`: the `{{name}}` placeholders a step uses that are not SOP variables, a
  workflow's declared run inputs (`execution.variables`), loop variables or extract results,
  plus `credentialsRequired` (as `<service>_<field>`) and
  `credentialField`s. All of them are listed in `config.credentials` (required); passwords,
  API keys and tokens are also listed in `config.secrets`.

Checkpoints (one per step at most, asked before the step runs)
- `manual` (every manual step) and `decision` (every decision without a rule) are always
  present, whatever the mode: without them those steps cannot proceed. Both default to
  `reject` on timeout (nobody did the manual work; a decision falls to its `no` branch).
- `before_step`, by `checkpointMode`: `risky_steps` (default) before irreversible steps
  (submit, send, delete, pay, create or update a record) and steps whose automation asks for
  a human checkpoint; `all_steps` before every task, manual and decision step; `custom`
  before the listed step ids; `none` adds no optional checkpoint. A `before_step` checkpoint
  defaults to `reject` for a risky step and to `approve` otherwise.

Estimated duration is the time the browser works, in seconds: per-action guesses, a loop
counted as min(maxIterations, 5) iterations, the longer branch of each decision, and nothing
for time spent waiting for a person.
"""

import heapq
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from aef import __version__, rules
from aef.errors import ValidationFailed
from aef.models import (
    Action,
    AefConfig,
    AefConfigPatch,
    AefSection,
    BrowserInstruction,
    CheckpointConfig,
    DecisionSpec,
    LoopSpec,
    PlanStep,
    SecretConfig,
    SopDocument,
    StepCheckpoint,
    StepKind,
    WorkflowAction,
    WorkflowCredential,
    WorkflowDocument,
)

AEF_FORMAT_VERSION = "1.0"
TRANSFORMED_BY = f"aef.transform/{__version__}"
DEFAULT_MAX_ITERATIONS = 50

# Bounds that keep every input cheap to process and the output storable (Postgres jsonb).
MAX_JSON_DEPTH = 64
MAX_JSON_VALUES = 250_000
MAX_NODES = 2_000
MAX_EDGES = 10_000
MAX_PLAN_DEPTH = 48
MAX_TIMEOUT_MS = 3_600_000
MAX_ESTIMATE_SECONDS = 7 * 24 * 3600
MAX_WARNINGS = 100
_MAX_LISTED_PROBLEMS = 10

SourceFormat = Literal["sop", "workflow"]
_M = TypeVar("_M", bound=BaseModel)
Branch = Literal["yes", "no"]


@dataclass(frozen=True)
class TransformResult:
    """The AEF document (JSON-ready, camelCase) plus what the API reports about it."""

    document: dict[str, Any]
    plan: list[PlanStep]
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
) -> TransformResult:
    """Turn an SOP or JSON workflow document into an AEF document.

    Raises `ValidationFailed` (and nothing else) for any input: bad shape, duplicate ids,
    dangling references, cycles outside loops, empty documents, unknown custom checkpoints.
    """
    try:
        return _Transformer(sop, config, now).run()
    except RecursionError:  # defensive: depths are bounded before anything recurses
        raise ValidationFailed("the document is nested too deeply") from None


# --------------------------------------------------------------------------------------
# Normalized graph
# --------------------------------------------------------------------------------------

_KIND_BY_TYPE: dict[str, str] = {
    "task": "task",
    "atomic_task": "task",
    "step": "task",
    "action": "task",
    "assert": "task",
    "error_handler": "task",
    "compound_task": "compound",
    "compound": "compound",
    "group": "compound",
    "loop": "loop",
    "iterative_loop": "loop",
    "list_iterator": "loop",
    "foreach": "loop",
    "for_each": "loop",
    "decision": "decision",
    "end": "end",
    "ui_interaction": "manual",
    "manual": "manual",
    "manual_task": "manual",
    "human": "manual",
    "human_task": "manual",
    "start": "noop",
    "trigger": "noop",
}

_YES = frozenset({"y", "yes", "true"})
_NO = frozenset({"n", "no", "false"})
_PLAIN_CONDITIONS = frozenset({"", "next", "start", "then", "continue", "default"})


@dataclass
class _Loop:
    iterator: str
    over: str | None
    max_iterations: int
    exit_condition: str | None


@dataclass
class _Node:
    id: str
    index: int
    type: str
    kind: str  # a StepKind, or "noop" for start/trigger markers
    label: str
    intent: str
    context: str
    id_path: str | None
    declared_parent: str | None
    declared_children: list[str]
    raw: Any
    actions: list[Action] = field(default_factory=list)
    manual: bool = False
    human_checkpoint: bool = False
    duration_hint: float | None = None
    loop: _Loop | None = None
    rule: str | None = None
    question: str | None = None
    credentials: list[str] = field(default_factory=list)
    risk_text: str = ""
    risky_action: bool = False


@dataclass(frozen=True)
class _Edge:
    source: str
    target: str
    branch: Branch | None
    condition: str | None


@dataclass(frozen=True)
class _ScopedEdge:
    target: str
    branch: Branch | None
    condition: str | None


@dataclass
class _Item:
    """A node placed in a scope's sequence; decisions carry their branches."""

    id: str
    yes: list["_Item"] | None = None
    no: list["_Item"] | None = None


# --------------------------------------------------------------------------------------
# The transformer
# --------------------------------------------------------------------------------------


class _Transformer:
    def __init__(
        self,
        sop: Any,
        config: Mapping[str, Any] | AefConfigPatch | None,
        now: datetime | None,
    ) -> None:
        self.sop = sop
        self.config_in = config
        self.now = now
        self.warnings: list[str] = []
        self.nodes: dict[str, _Node] = {}
        self.edges: list[_Edge] = []
        self.duplicates: list[str] = []
        self.start_targets: list[str] = []
        self.runtime_vars: set[str] = set()
        self.parent: dict[str, str | None] = {}
        self.children: dict[str | None, list[str]] = {}
        self.scope_edges: dict[str | None, dict[str, list[_ScopedEdge]]] = {}
        self.entries: dict[str | None, list[str]] = {}
        self.continue_conditions: dict[str, list[str]] = {}
        self.exit_conditions: dict[str, list[str]] = {}

    def run(self) -> TransformResult:
        document = _checked_copy(self.sop)
        patch = _parse_config(self.config_in)
        fmt, title, source_defaults = self._load(document)
        self._validate_graph()
        self._build_hierarchy()
        self._lift_edges()
        config = _effective_config(patch, source_defaults, self.warnings)
        policy = _CheckpointPolicy(config, self._custom_checkpoints(config))
        plan = [self._plan_step(item, policy, 0) for item in self._plan_scope(None, 0)]
        if config.checkpoint_mode == "none" and policy.required_count:
            self.warnings.append(
                f"checkpointMode none: {policy.required_count} decision or manual "
                "checkpoint(s) remain because those steps cannot proceed without a person"
            )
        config.checkpoints = [
            CheckpointConfig(step_id=step.id, **step.checkpoint.model_dump())
            for step in _walk_steps(plan)
            if step.checkpoint is not None
        ]
        config.credentials, config.secrets = self._credentials(plan)
        transformed_at = (self.now or datetime.now(UTC)).astimezone(UTC)
        section = AefSection(
            config=config,
            plan=plan,
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
            warnings=_capped(self.warnings),
            estimated_step_count=sum(1 for _ in _walk_steps(plan)),
            estimated_duration_seconds=min(
                MAX_ESTIMATE_SECONDS, math.ceil(sum(_duration(s) for s in plan))
            ),
            source_format=fmt,
            title=title,
        )

    # -- loading ----------------------------------------------------------------------

    def _load(self, document: dict[str, Any]) -> tuple[SourceFormat, str | None, dict[str, Any]]:
        public = document.get("public")
        execution = document.get("execution")
        is_sop = isinstance(public, dict) and "nodes" in public
        is_workflow = isinstance(execution, dict) and "workflow" in execution
        if is_sop and is_workflow:
            raise ValidationFailed(
                "the document has both public.nodes (SOP) and execution.workflow "
                "(JSON workflow); cannot tell which to run"
            )
        if is_sop:
            return "sop", *self._load_sop(document)
        if is_workflow:
            return "workflow", *self._load_workflow(document)
        raise ValidationFailed(
            "unrecognised document: expected an SOP (public.nodes) or a JSON workflow "
            "(execution.workflow.nodes)"
        )

    def _load_sop(self, document: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        sop = _validate(SopDocument, document)
        raw_nodes = document["public"]["nodes"]
        _check_counts(len(sop.public.nodes), len(sop.public.edges))
        if sop.public.variables:
            self.runtime_vars.update(sop.public.variables)
        if sop.private is not None:
            for skill in sop.private.skills:
                self.runtime_vars.update(skill.variables_in or [])
                self.runtime_vars.update(skill.variables_out or [])
        for index, n in enumerate(sop.public.nodes):
            node = self._new_node(
                index=index,
                node_id=n.id,
                node_type=n.type,
                label=n.label,
                intent=n.intent,
                context=n.context,
                id_path=n.id_path,
                parent=n.parent_id,
                children=n.children,
                raw=raw_nodes[index],
            )
            node.rule = self._checked_rule(n.id, n.rule)
            node.question = n.question
            if n.automation is not None:
                auto = n.automation
                node.actions = self._sop_actions(n.id, auto.instructions)
                node.manual = (
                    node.manual
                    or auto.automatable is False
                    or ((auto.automation_type or "").lower() == "manual")
                )
                node.human_checkpoint = bool(auto.human_checkpoint)
                if auto.estimated_duration_ms is not None:
                    node.duration_hint = auto.estimated_duration_ms / 1000
            if node.kind == "loop":
                extra = n.model_extra or {}
                iterator = n.iterator or "item"
                over = n.over or _first_str(extra, ("list", "items", "collection"))
                node.loop = _Loop(
                    iterator=iterator,
                    over=over or _plural(iterator),
                    max_iterations=_positive_int(
                        extra.get("maxIterations", extra.get("max_iterations"))
                    ),
                    exit_condition=self._checked_exit(n.id, n.exit_condition),
                )
                self.runtime_vars.update({iterator, node.loop.over or iterator})
            self._finish_node(node)
        for e in sop.public.edges:
            self._add_edge(e.source, e.target, _branch(e.decision_path, e.condition), e.condition)
        for clarification in sop.public.clarification_requests:
            if clarification.question:
                self.warnings.append(
                    f"open question {clarification.id or ''} "
                    f"({clarification.importance or 'unrated'}): {clarification.question}"
                )
        title = sop.meta.title if sop.meta is not None else None
        return title, {}

    def _load_workflow(self, document: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        wf = _validate(WorkflowDocument, document)
        graph = wf.execution.workflow
        raw_nodes = document["execution"]["workflow"].get("nodes", [])
        outbound_count = sum(len(n.outbound_edges or {}) for n in graph.nodes)
        if wf.execution.variables:
            self.runtime_vars.update(wf.execution.variables)
        _check_counts(len(graph.nodes), len(graph.flow) + outbound_count)
        for index, n in enumerate(graph.nodes):
            node = self._new_node(
                index=index,
                node_id=n.id,
                node_type=n.type,
                label=n.label,
                intent=n.intent,
                context=n.context,
                id_path=None,
                parent=n.parent_id,
                children=n.children,
                raw=raw_nodes[index],
            )
            node.actions = [self._workflow_action(n.id, a, node) for a in n.actions]
            for a in n.assert_conditions or []:
                verify = _assert_action(a.type, a.value)
                if verify is None:
                    self.warnings.append(
                        f"step {n.id}: assert condition {a.type!r} is not understood; ignored"
                    )
                else:
                    node.actions.append(verify)
            for service, fields in (n.credentials_required or {}).items():
                node.credentials.extend(f"{service}_{f}" for f in fields)
            if n.type == "error_handler" and n.human_escalate:
                node.manual = True
            node.rule = self._checked_rule(n.id, n.rule) or _schema_rule(
                n.condition_schema, node.actions
            )
            node.question = n.question
            if node.kind == "loop":
                cfg = n.iterator_config
                iterator = n.iterator or (cfg.item_variable if cfg else None) or "item"
                over = n.over or (cfg.list_variable if cfg else None)
                node.loop = _Loop(
                    iterator=iterator,
                    over=over,
                    max_iterations=_positive_int(
                        n.max_iterations
                        if n.max_iterations is not None
                        else (cfg.max_iterations if cfg else None)
                    ),
                    exit_condition=None,
                )
                self.runtime_vars.update(
                    v for v in (iterator, over, cfg.index_variable if cfg else None) if v
                )
            self._finish_node(node)
            for key, target in (n.outbound_edges or {}).items():
                self._add_edge(n.id, target, _branch(key, None), key)
        for e in graph.flow:
            self._add_edge(e.from_, e.to, _branch(None, e.condition), e.condition)
        defaults: dict[str, Any] = {}
        if wf.config is not None:
            if wf.config.pause_on_errors is not None:
                defaults["pause_on_errors"] = wf.config.pause_on_errors
            if wf.config.retry_attempts is not None:
                defaults["auto_retry_enabled"] = wf.config.retry_attempts > 0
        title = wf.meta.title if wf.meta is not None else None
        return title, defaults

    def _new_node(
        self,
        *,
        index: int,
        node_id: str,
        node_type: str | None,
        label: str | None,
        intent: str | None,
        context: str | None,
        id_path: str | None,
        parent: str | None,
        children: list[str] | None,
        raw: Any,
    ) -> _Node:
        raw_type = (node_type or "").strip().lower()
        kind = _KIND_BY_TYPE.get(raw_type)
        if kind is None:
            if raw_type:
                self.warnings.append(
                    f"step {node_id}: node type {node_type!r} is not known to AEF; "
                    "run as a natural-language step"
                )
            else:
                self.warnings.append(f"step {node_id}: node has no type; treated as a task")
            kind = "task"
        return _Node(
            id=node_id,
            index=index,
            type=raw_type,
            kind=kind,
            label=(label or "").strip() or node_id,
            intent=(intent or "").strip(),
            context=(context or "").strip(),
            id_path=id_path,
            declared_parent=parent,
            declared_children=list(children or []),
            raw=raw,
            manual=kind == "manual",
        )

    def _finish_node(self, node: _Node) -> None:
        """Record the node; duplicates are collected and reported by `_validate_graph`."""
        for a in node.actions:
            if a.type == "extract" and a.variable:
                self.runtime_vars.add(a.variable)
            if a.credential_field:
                node.credentials.append(a.credential_field)
        node.risk_text = " ".join(
            [node.label, node.intent, *(a.instruction or "" for a in node.actions)]
        )
        if node.id in self.nodes:
            self.duplicates.append(node.id)
        else:
            self.nodes[node.id] = node

    def _add_edge(self, source: str, target: str, branch: Branch | None, cond: str | None) -> None:
        self.edges.append(_Edge(source, target, branch, cond))

    def _checked_rule(self, node_id: str, rule: str | None) -> str | None:
        """A decision rule the runner can evaluate (aef.rules), else None: a person decides."""
        return self._evaluable(node_id, "rule", rule, "a checkpoint will ask instead")

    def _checked_exit(self, node_id: str, condition: str | None) -> str | None:
        """The runner evaluates exit conditions as rules; prose is dropped with a warning."""
        return self._evaluable(node_id, "exit condition", condition,
                               "the loop runs over all its items")

    def _evaluable(self, node_id: str, what: str, text: str | None,
                   otherwise: str) -> str | None:
        if text is None or not text.strip():
            return None
        if _is_rule(text):
            return text.strip()
        self.warnings.append(
            f"step {node_id}: {what} {text[:80]!r} is not an expression AEF can evaluate; "
            f"{otherwise}"
        )
        return None

    # -- actions ----------------------------------------------------------------------

    def _workflow_action(self, node_id: str, a: WorkflowAction, node: _Node) -> Action:
        """One workflow action as a plan `Action`.

        Both shapes are read: the documented flat `Action` fields (`url`, `selector`,
        `value`, `key`, `timeoutMs`, `urlContains`, `attribute`, `many`, `state`, `pattern`,
        `variable`) and the nested fixture shape (`target.*`, `data`, `timeout`); a flat
        field wins over its nested counterpart. A flat action of a native type passes
        through unchanged, so a workflow written in the plan's own vocabulary runs as written.
        """
        kind = a.type.strip().lower()
        target = a.target
        data = a.data or {}
        url = a.url or (target.url if target else None)
        selector = a.selector or (target.selector if target else None)
        url_contains = a.url_contains or (target.url_contains if target else None)
        value = _flat_value(a.value) if a.value is not None else _data_value(data)
        nested_key = data.get("key") if isinstance(data.get("key"), str) else None
        key = a.key or nested_key
        raw_timeout = a.timeout_ms if a.timeout_ms is not None else a.timeout
        timeout_ms = None if raw_timeout is None else min(int(raw_timeout), MAX_TIMEOUT_MS)
        instruction = a.instruction or node.intent or node.label
        common: dict[str, Any] = {
            "instruction": instruction,
            "timeout_ms": timeout_ms,
            "credential_field": a.credential_field,
        }
        if kind in ("create_row", "update_row", "upload"):
            node.risky_action = True
        if kind in ("navigate", "navigate_or_switch_tab", "goto", "open_url"):
            if url:
                return Action(type="navigate", url=url, **common)
            return Action(type="act", selector=selector, **common)
        if kind == "wait_for_navigation":
            return Action(type="wait", url_contains=url_contains or url, **common)
        if kind == "wait":
            state = a.state or (None if (selector or url_contains) else "load")
            return Action(
                type="wait", selector=selector, url_contains=url_contains, state=state, **common
            )
        if kind in ("extract", "extract_list", "paginate_extract"):
            many = a.many if a.many is not None else (True if kind != "extract" else None)
            return Action(
                type="extract",
                selector=selector,
                variable=a.variable or node_id,
                attribute=a.attribute,
                many=many,
                pattern=a.pattern,
                schema=a.schema_,
                **common,
            )
        if kind in ("verify", "assert_element"):
            return Action(
                type="verify",
                selector=selector,
                url_contains=url_contains,
                value=value,
                pattern=a.pattern,
                state=a.state,
                **common,
            )
        if kind in ("click", "fill", "type", "select", "check", "uncheck", "scroll"):
            return Action(type=kind, selector=selector, value=value, **common)  # type: ignore[arg-type]
        if kind in ("press", "upload", "download"):
            variable = a.variable if kind == "download" else None
            return Action(
                type=kind,  # type: ignore[arg-type]
                selector=selector,
                key=key,
                value=value,
                url=url,
                variable=variable,
                **common,
            )
        if kind not in ("act", "visual_scan", "conditional_auth"):
            self.warnings.append(
                f"step {node_id}: action type {a.type!r} is not known to AEF; "
                "run as a natural-language action"
            )
        return Action(type="act", selector=selector, value=value, **common)

    def _sop_actions(self, node_id: str, instructions: list[BrowserInstruction]) -> list[Action]:
        ordered = sorted(
            enumerate(instructions),
            key=lambda p: (p[1].sequence is None, p[1].sequence or 0, p[0]),
        )
        actions: list[Action] = []
        for _, bi in ordered:
            text = (bi.stagehand_instruction or bi.description or "").strip()
            if not text:
                self.warnings.append(f"step {node_id}: an automation instruction has no text")
                continue
            kind = (bi.action_type or "").strip().lower()
            selector = _css_selector(bi.selector_strategies)
            if kind == "navigate":
                url = _first_url(text)
                actions.append(
                    Action(type="navigate", url=url, instruction=text)
                    if url
                    else Action(type="act", instruction=text)
                )
            elif kind in ("click", "verify"):
                actions.append(Action(type=kind, selector=selector, instruction=text))  # type: ignore[arg-type]
            elif kind == "extract":
                actions.append(Action(type="extract", instruction=text, variable=node_id))
            elif kind == "wait":
                actions.append(
                    Action(
                        type="wait",
                        selector=selector,
                        instruction=text,
                        state=None if selector else "load",
                    )
                )
            else:
                if kind not in ("type", "act"):
                    self.warnings.append(
                        f"step {node_id}: automation action type {bi.action_type!r} is not "
                        "known to AEF; run as a natural-language action"
                    )
                actions.append(Action(type="act", selector=selector, instruction=text))
        return actions

    # -- structure validation -----------------------------------------------------------

    def _validate_graph(self) -> None:
        if not self.nodes:
            raise ValidationFailed("the document has no nodes: there is nothing to run")
        if self.duplicates:
            dups = sorted(set(self.duplicates))
            raise ValidationFailed(
                f"duplicate node ids: {_names(dups)}", problems=["duplicate id"], ids=dups
            )
        problems: list[str] = []
        ids: list[str] = []
        known = self.nodes
        kept: list[_Edge] = []
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
        _raise_problems(problems, ids)

    def _build_hierarchy(self) -> None:
        problems: list[str] = []
        ids: list[str] = []
        listed_by: dict[str, str] = {}
        for node in self.nodes.values():
            seen: set[str] = set()
            for child in node.declared_children:
                if child in seen:
                    continue
                seen.add(child)
                owner = listed_by.setdefault(child, node.id)
                if owner != node.id:
                    problems.append(
                        f"node {child} is listed as a child of both {owner} and {node.id}"
                    )
                    ids.append(child)
        for node in self.nodes.values():
            listed = listed_by.get(node.id)
            declared = node.declared_parent
            if listed and declared and listed != declared:
                problems.append(
                    f"node {node.id} has parentId {declared} but is listed as a child of {listed}"
                )
                ids.append(node.id)
            parent = listed or declared
            if parent == node.id:
                problems.append(f"node {node.id} is its own parent")
                ids.append(node.id)
            self.parent[node.id] = parent
        _raise_problems(problems, ids)
        for node_id in self.nodes:  # no cycles, bounded depth
            depth, cur, chain = 0, node_id, [node_id]
            while (cur := self.parent[cur]) is not None:  # type: ignore[assignment]
                depth += 1
                if cur == node_id:
                    raise ValidationFailed(
                        f"nodes {_names(chain)} are each other's parents", ids=chain
                    )
                if depth > MAX_PLAN_DEPTH:
                    raise ValidationFailed(
                        f"node {node_id} is nested more than {MAX_PLAN_DEPTH} levels deep",
                        ids=[node_id],
                    )
                chain.append(cur)
        self._adopt_orphans()
        self._order_children()
        for node in self.nodes.values():
            has_children = bool(self.children.get(node.id))
            if has_children and node.kind in ("decision", "end", "noop"):
                raise ValidationFailed(
                    f"{node.kind} node {node.id} cannot contain other steps", ids=[node.id]
                )
            if has_children and node.kind in ("task", "manual"):
                if node.kind == "manual":
                    self.warnings.append(
                        f"step {node.id}: a manual step with child steps is run as a group"
                    )
                    node.manual = False
                node.kind = "compound"
            elif not has_children and node.kind == "compound":
                node.kind = "task"
            elif not has_children and node.kind == "loop":
                self.warnings.append(f"step {node.id}: the loop has no steps in its body")

    def _ancestors(self, node_id: str) -> list[str]:
        """The node and its ancestors, innermost first."""
        chain = [node_id]
        while (p := self.parent[chain[-1]]) is not None:
            chain.append(p)
        return chain

    def _adopt_orphans(self) -> None:
        """Place a top-level node reached only from inside one container into it (v0.6)."""
        incoming: dict[str, list[str]] = {}
        outgoing: dict[str, list[str]] = {}
        for e in self.edges:
            incoming.setdefault(e.target, []).append(e.source)
            outgoing.setdefault(e.source, []).append(e.target)
        queue = [n for n in self.nodes if self.parent[n] is None and n in incoming]
        queued = set(queue)
        while queue:
            orphan = queue.pop(0)
            queued.discard(orphan)
            if self.parent[orphan] is not None:
                continue
            scopes = {
                self.parent[s] for s in incoming.get(orphan, []) if orphan not in self._ancestors(s)
            }
            if len(scopes) != 1:
                continue
            (scope,) = scopes
            if scope is None or orphan in self._ancestors(scope):
                continue
            if len(self._ancestors(scope)) >= MAX_PLAN_DEPTH:
                continue
            self.parent[orphan] = scope
            self.warnings.append(
                f"step {orphan}: not listed in any container but only reached from inside "
                f"{scope}; placed in {scope}"
            )
            for t in outgoing.get(orphan, []):
                if self.parent[t] is None and t not in queued:
                    queue.append(t)
                    queued.add(t)

    def _order_children(self) -> None:
        members: dict[str | None, list[str]] = {}
        for node in sorted(self.nodes.values(), key=_position):
            members.setdefault(self.parent[node.id], []).append(node.id)
        for scope, ids in members.items():
            if scope is None:
                self.children[None] = ids
                continue
            listed = [
                c
                for c in dict.fromkeys(self.nodes[scope].declared_children)
                if self.parent[c] == scope
            ]
            listed_set = set(listed)
            self.children[scope] = listed + [c for c in ids if c not in listed_set]

    # -- edges per scope ----------------------------------------------------------------

    def _lift_edges(self) -> None:
        """Express every edge as an edge between siblings of the innermost common scope."""
        problems: list[str] = []
        ids: list[str] = []
        for target in self.start_targets:
            self._mark_entries(reversed(self._ancestors(target)))
        for e in self.edges:
            s, t = e.source, e.target
            if s == t:
                if self.nodes[s].kind == "loop":
                    self._add_continue(s, e)
                else:
                    problems.append(f"cycle outside a loop: {s} → {s}")
                    ids.append(s)
                continue
            up_s = self._ancestors(s)
            up_t = self._ancestors(t)
            if t in up_s:
                if self.nodes[t].kind == "loop":
                    self._add_continue(t, e)
                else:
                    problems.append(
                        f"cycle outside a loop: {s} → {t} returns to the enclosing step {t}, "
                        "which is not a loop"
                    )
                    ids.extend([s, t])
                continue
            down_s, down_t = up_s[::-1], up_t[::-1]
            if s in up_t:
                self._mark_entries(down_t[down_t.index(s) + 1 :])
                continue
            k = 0
            while down_s[k] == down_t[k]:
                k += 1
            scope = down_s[k - 1] if k else None
            u, v = down_s[k], down_t[k]
            self._mark_entries(down_t[k + 1 :])
            branch = e.branch if u == s else None
            if u != s and self.nodes[s].kind == "decision" and e.branch:
                self.warnings.append(
                    f"step {s}: the {e.branch} branch to {t} leaves the enclosing step {u}; "
                    f"in the plan that branch ends {u}"
                )
            if self.nodes[u].kind == "loop" and _meaningful(e.condition) and u == s:
                self.exit_conditions.setdefault(u, []).append(e.condition or "")
            out = self.scope_edges.setdefault(scope, {}).setdefault(u, [])
            for i, existing in enumerate(out):
                if existing.target == v:
                    if existing.branch is None and branch is not None:
                        out[i] = _ScopedEdge(v, branch, e.condition)
                    break
            else:
                out.append(_ScopedEdge(v, branch, e.condition))
        _raise_problems(problems, ids, prefix="")

    def _mark_entries(self, path: Iterable[str]) -> None:
        for node_id in path:
            entries = self.entries.setdefault(self.parent[node_id], [])
            if node_id not in entries:
                entries.append(node_id)

    def _add_continue(self, loop_id: str, e: _Edge) -> None:
        if _meaningful(e.condition):
            self.continue_conditions.setdefault(loop_id, []).append(e.condition or "")

    # -- ordering -----------------------------------------------------------------------

    def _plan_scope(self, scope: str | None, depth: int) -> list[_Item]:
        """Order one scope's members into a sequence with decision branches."""
        _check_depth(depth, scope)
        members = self.children.get(scope, [])
        if not members:
            return []
        rank = {m: i for i, m in enumerate(members)}
        raw_succ = self.scope_edges.get(scope, {})
        succ = {m: sorted(raw_succ.get(m, []), key=lambda se: rank[se.target]) for m in members}
        indegree = dict.fromkeys(members, 0)
        for outs in succ.values():
            for se in outs:
                indegree[se.target] += 1
        marked = sorted(self.entries.get(scope, []), key=rank.__getitem__)
        starts = marked + [m for m in members if indegree[m] == 0 and m not in marked]
        if not starts:
            starts = [members[0]]
        is_loop_body = scope is not None and self.nodes[scope].kind == "loop"
        back, topo = self._dag(scope, members, succ, starts, is_loop_body)
        dag = {m: [se for se in succ[m] if (m, se.target) not in back] for m in members}
        topo_index = {m: i for i, m in enumerate(topo)}
        builder = _SequenceBuilder(self, dag, topo_index)
        sequence: list[_Item] = []
        for start in [*starts, *members]:
            if start not in builder.visited:
                sequence.extend(builder.run(start, frozenset(), depth))
        return sequence

    def _dag(
        self,
        scope: str | None,
        members: list[str],
        succ: dict[str, list[_ScopedEdge]],
        starts: list[str],
        is_loop_body: bool,
    ) -> tuple[set[tuple[str, str]], list[str]]:
        """Depth-first search: find back edges (allowed only to a loop body's start) and a
        topological order of what remains."""
        heads = set(starts)
        state: dict[str, int] = {}  # 1 on the stack, 2 done
        back: set[tuple[str, str]] = set()
        postorder: list[str] = []
        for root in [*starts, *members]:
            if root in state:
                continue
            state[root] = 1
            stack = [(root, iter(succ[root]))]
            path = [root]
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[node] = 2
                    postorder.append(node)
                    stack.pop()
                    path.pop()
                    continue
                v = nxt.target
                seen = state.get(v)
                if seen is None:
                    state[v] = 1
                    stack.append((v, iter(succ[v])))
                    path.append(v)
                elif seen == 1:
                    if is_loop_body and v in heads:
                        back.add((node, v))
                        if _meaningful(nxt.condition) and scope is not None:
                            self.continue_conditions.setdefault(scope, []).append(
                                nxt.condition or ""
                            )
                    else:
                        cycle = [*path[path.index(v) :], v]
                        where = f" inside loop {scope}" if is_loop_body else ""
                        raise ValidationFailed(
                            f"cycle outside a loop{where}: {' → '.join(cycle)}",
                            ids=cycle[:-1],
                        )
        return back, postorder[::-1]

    # -- plan steps ---------------------------------------------------------------------

    def _plan_step(self, item: _Item, policy: "_CheckpointPolicy", depth: int) -> PlanStep:
        _check_depth(depth, item.id)
        node = self.nodes[item.id]
        # A start/trigger marker is an empty group: the runner completes it without acting.
        kind: StepKind = "compound" if node.kind == "noop" else node.kind  # type: ignore[assignment]
        children: list[PlanStep] = []
        if node.kind in ("compound", "loop"):
            children = [
                self._plan_step(sub, policy, depth + 1)
                for sub in self._plan_scope(node.id, depth + 1)
            ]
        decision = None
        if kind == "decision":
            decision = DecisionSpec(
                question=node.question
                or (node.label if node.label.endswith("?") else (node.intent or node.label)),
                rule=node.rule,
                yes=[self._plan_step(s, policy, depth + 1) for s in item.yes or []],
                no=[self._plan_step(s, policy, depth + 1) for s in item.no or []],
            )
        manual = node.manual and kind in ("task", "manual")
        if manual:
            kind = "manual"
        actions = [] if manual else node.actions
        if manual:
            method = "manual"
        elif actions or kind != "task":
            method = "automated"
        else:
            method = "grounded"
        instruction = None if actions else _instruction(node)
        reason = (
            _risk_reason(node)
            if kind in ("task", "manual") or (kind == "compound" and actions)
            else None
        )
        loop = None
        if kind == "loop" and node.loop is not None:
            exit_condition = node.loop.exit_condition
            candidates = [
                *self.exit_conditions.get(node.id, []),
                *(_negated(c) for c in self.continue_conditions.get(node.id, [])),
            ]
            if exit_condition is None:
                exit_condition = next((c for c in candidates if _is_rule(c)), None)
            loop = LoopSpec(
                iterator=node.loop.iterator,
                over=node.loop.over,
                max_iterations=node.loop.max_iterations,
                exit_condition=exit_condition,
            )
        step = PlanStep(
            id=node.id,
            label=node.label,
            kind=kind,
            method=method,  # type: ignore[arg-type]
            actions=actions,
            instruction=instruction,
            children=children,
            loop=loop,
            decision=decision,
            risky=reason is not None,
            credentials=self._step_credentials(node),
        )
        step.checkpoint = policy.checkpoint_for(step, reason, node.human_checkpoint)
        return step

    def _step_credentials(self, node: _Node) -> list[str]:
        names = list(node.credentials)
        text = json.dumps(node.raw, ensure_ascii=False)
        for match in _PLACEHOLDER.finditer(text):
            name = match.group(1)
            if "." in name or name in self.runtime_vars:
                continue
            names.append(name)
        return list(dict.fromkeys(n for n in names if n))

    def _custom_checkpoints(self, config: AefConfig) -> set[str]:
        """Every node becomes exactly one plan step, so node ids are the step ids."""
        if config.checkpoint_mode != "custom":
            return set()
        unknown = [s for s in config.custom_checkpoints if s not in self.nodes]
        if unknown:
            raise ValidationFailed(
                f"customCheckpoints names unknown step ids: {_names(unknown)}", ids=unknown
            )
        return set(config.custom_checkpoints)

    def _credentials(
        self, plan: list[PlanStep]
    ) -> tuple[list[WorkflowCredential], list[SecretConfig]]:
        steps_by_name: dict[str, list[str]] = {}
        for step in _walk_steps(plan):
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


class _SequenceBuilder:
    """Walks one scope's acyclic graph into a sequence; decisions split and re-join."""

    def __init__(
        self,
        t: _Transformer,
        dag: dict[str, list[_ScopedEdge]],
        topo_index: dict[str, int],
    ) -> None:
        self.t = t
        self.dag = dag
        self.topo_index = topo_index
        self.visited: set[str] = set()

    def run(self, start: str | None, stop: frozenset[str], depth: int) -> list[_Item]:
        _check_depth(depth, start)
        out: list[_Item] = []
        cur = start
        while cur is not None and cur not in stop and cur not in self.visited:
            self.visited.add(cur)
            outs = self.dag[cur]
            if self.t.nodes[cur].kind == "decision":
                yes, no, cont = self._branches(cur, outs)
                merge = cont if cont is not None else self._merge(yes, no)
                inner = stop | {merge} if merge is not None else stop
                out.append(
                    _Item(
                        cur,
                        yes=self.run(yes, inner, depth + 1) if yes else [],
                        no=self.run(no, inner, depth + 1) if no else [],
                    )
                )
                cur = merge
                continue
            out.append(_Item(cur))
            if len(outs) > 1:
                self.t.warnings.append(
                    f"step {cur}: several next steps ({_names([o.target for o in outs])}); "
                    f"following {outs[0].target}, the others run after this sequence"
                )
            cur = outs[0].target if outs else None
        if cur is not None and cur not in stop and cur in self.visited:
            self.t.warnings.append(
                f"flow into {cur} again after {out[-1].id if out else start}: "
                f"{cur} already runs earlier in the plan"
            )
        return out

    def _branches(
        self, decision: str, outs: list[_ScopedEdge]
    ) -> tuple[str | None, str | None, str | None]:
        yes = [o.target for o in outs if o.branch == "yes"]
        no = [o.target for o in outs if o.branch == "no"]
        other = [o.target for o in outs if o.branch is None]
        for name, targets in (("yes", yes), ("no", no)):
            if len(targets) > 1:
                raise ValidationFailed(
                    f"decision {decision} has {len(targets)} '{name}' branches: {_names(targets)}",
                    ids=[decision, *targets],
                )
        if other:
            if not yes and not no and len(other) == 1:
                self.t.warnings.append(
                    f"step {decision}: decision has no yes/no edges; it only continues to "
                    f"{other[0]}"
                )
                return None, None, other[0]
            if len(other) == 1 and (not yes or not no):
                if yes:
                    no = other
                else:
                    yes = other
            else:
                raise ValidationFailed(
                    f"decision {decision}: cannot tell which of the edges to "
                    f"{_names(other)} is yes and which is no",
                    ids=[decision, *other],
                )
        return (yes[0] if yes else None), (no[0] if no else None), None

    def _merge(self, yes: str | None, no: str | None) -> str | None:
        """The first node (in topological order) reached from both branches, if any.

        Expands both branches together in topological order, so a node's flags are final
        when it is taken and the search stops at the merge point instead of exploring all
        that follows it.
        """
        if yes is None or no is None:
            return None
        topo = self.topo_index
        reached = {yes: 1, no: 2} if yes != no else {yes: 3}
        heap = [(topo[n], n) for n in reached]
        heapq.heapify(heap)
        while heap:
            _, node = heapq.heappop(heap)
            flags = reached[node]
            if flags == 3:
                return node
            for se in self.dag[node]:
                before = reached.get(se.target)
                if before is None:
                    heapq.heappush(heap, (topo[se.target], se.target))
                    before = 0
                reached[se.target] = before | flags
        return None


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


class _CheckpointPolicy:
    def __init__(self, config: AefConfig, custom: set[str]) -> None:
        self.mode = config.checkpoint_mode
        self.timeout = config.checkpoint_timeout
        self.custom = custom
        self.required_count = 0

    def checkpoint_for(
        self, step: PlanStep, risk: str | None, human_checkpoint: bool
    ) -> StepCheckpoint | None:
        cp = self._required(step)
        if cp is not None:
            self.required_count += 1
            return cp
        return self._optional(step, risk, human_checkpoint)

    def _required(self, step: PlanStep) -> StepCheckpoint | None:
        if step.method == "manual":
            return StepCheckpoint(
                type="manual",
                title=f"Manual step: {step.label}",
                description=(
                    f"{step.instruction or step.label}\n\nDo this in the browser (take over), "
                    "then approve. Reject if it cannot be done."
                ),
                timeout_seconds=self.timeout,
                default_action="reject",
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
            )
        return None

    def _optional(
        self, step: PlanStep, risk: str | None, human_checkpoint: bool
    ) -> StepCheckpoint | None:
        if self.mode == "risky_steps":
            wanted = risk is not None or human_checkpoint
        elif self.mode == "all_steps":
            wanted = step.kind in ("task", "manual", "decision")
        elif self.mode == "custom":
            wanted = step.id in self.custom
        else:
            wanted = False
        if not wanted:
            return None
        what = step.instruction or "; ".join(a.instruction or a.type for a in step.actions)
        what = what.strip().rstrip(".") or step.label
        if risk is not None:
            description = (
                f"This step {risk} and may not be reversible: {what}. It runs only after approval."
            )
        else:
            description = f"Review before it runs: {what}."
        return StepCheckpoint(
            type="before_step",
            title=f"Approve: {step.label}",
            description=description,
            timeout_seconds=self.timeout,
            default_action="reject" if risk is not None else "approve",
        )


# --------------------------------------------------------------------------------------
# Helpers (pure functions)
# --------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}\}")
_URL = re.compile(r"https?://[^\s'\"<>)]+")
_CSS_LIKE = re.compile(r"^(?:[a-zA-Z][\w-]*)?[\[#.][^\s]|^(?:css|xpath|text|role|id)=|^//")

_RISKS: list[tuple[re.Pattern[str], str]] = [
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
    (
        re.compile(
            r"\b(?:creat(?:e|es|ing)|add(?:s|ing)?|insert(?:s|ing)?|updat(?:e|es|ing)|"
            r"edit(?:s|ing)?|modif(?:y|ies|ying)|populat(?:e|es|ing)|fill(?:s|ing)? out|"
            r"sav(?:e|es|ing)|overwrit(?:e|es|ing)|append(?:s|ing)?)\b"
            r"[^.;]{0,60}?\b(?:records?|rows?|entry|entries|fields?|forms?|contacts?|leads?|"
            r"deals?|crm|database|tables?|investors?|customers?|accounts?|changes)\b",
            re.I,
        ),
        "creates or updates a record",
    ),
]

_ACTION_SECONDS: dict[str, float] = {
    "navigate": 3,
    "click": 1,
    "fill": 1,
    "type": 1.5,
    "select": 1,
    "check": 0.5,
    "uncheck": 0.5,
    "press": 0.5,
    "scroll": 1,
    "wait": 2,
    "extract": 4,
    "verify": 1,
    "upload": 3,
    "download": 3,
    "act": 4,
}
_GROUNDED_SECONDS = 8.0
_MANUAL_SECONDS = 60.0
_ASSUMED_ITERATIONS = 5


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
    return _validate(AefConfigPatch, dict(config), root="config")


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


def _validate(model: type[_M], data: dict[str, Any], root: str = "") -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{_loc(root, err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        ]
        expected = {SopDocument: "SOP", WorkflowDocument: "JSON workflow"}.get(model, "config")
        raise ValidationFailed(
            f"the {root or 'document'} does not match the {expected} format: {_join(problems)}",
            problems=problems[:50],
        ) from None


def _loc(root: str, loc: tuple[Any, ...]) -> str:
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def _check_counts(nodes: int, edges: int) -> None:
    if nodes > MAX_NODES:
        raise ValidationFailed(f"the document has {nodes} nodes; at most {MAX_NODES} are allowed")
    if edges > MAX_EDGES:
        raise ValidationFailed(f"the document has {edges} edges; at most {MAX_EDGES} are allowed")


def _check_depth(depth: int, where: str | None) -> None:
    if depth > MAX_PLAN_DEPTH:
        raise ValidationFailed(
            f"steps are nested more than {MAX_PLAN_DEPTH} levels deep (at {where})",
            ids=[where] if where else [],
        )


def _raise_problems(problems: list[str], ids: list[str], prefix: str = "") -> None:
    if problems:
        raise ValidationFailed(
            prefix + _join(problems), problems=problems[:50], ids=list(dict.fromkeys(ids))
        )


def _capped(warnings: list[str]) -> list[str]:
    if len(warnings) <= MAX_WARNINGS:
        return warnings
    kept = warnings[: MAX_WARNINGS - 1]
    return [*kept, f"... and {len(warnings) - len(kept)} more warnings"]


def _join(problems: list[str]) -> str:
    shown = "; ".join(problems[:_MAX_LISTED_PROBLEMS])
    more = len(problems) - _MAX_LISTED_PROBLEMS
    return shown + (f" (and {more} more)" if more > 0 else "")


def _names(ids: Iterable[str]) -> str:
    ids = list(ids)
    shown = ", ".join(ids[:_MAX_LISTED_PROBLEMS])
    return shown + (f" (and {len(ids) - _MAX_LISTED_PROBLEMS} more)" if len(ids) > 10 else "")


def _branch(decision_path: str | None, condition: str | None) -> Branch | None:
    for value in (decision_path, condition):
        if value is None:
            continue
        key = value.strip().lower()
        if key in _YES:
            return "yes"
        if key in _NO:
            return "no"
    return None


def _meaningful(condition: str | None) -> bool:
    return condition is not None and condition.strip().lower() not in (
        _PLAIN_CONDITIONS | _YES | _NO
    )


def _position(node: _Node) -> tuple[Any, ...]:
    if node.id_path:
        parts = tuple(
            (0, int(p), "") if p.isdigit() else (1, 0, p)
            for p in re.findall(r"\d+|[^\d.]+", node.id_path)
        )
        return (0, parts, node.index)
    return (1, (), node.index)


def _walk_steps(steps: list[PlanStep]) -> Iterable[PlanStep]:
    """Every step of a plan tree, depth first in plan order."""
    stack = list(reversed(steps))
    while stack:
        step = stack.pop()
        yield step
        nested = [*step.children]
        if step.decision is not None:
            nested += [*step.decision.yes, *step.decision.no]
        stack.extend(reversed(nested))


def _instruction(node: _Node) -> str:
    head = node.intent or node.label
    return f"{head}\n\n{node.context}" if node.context else head


def _risk_reason(node: _Node) -> str | None:
    if node.risky_action:
        return "creates or updates a record"
    for pattern, reason in _RISKS:
        if pattern.search(node.risk_text):
            return reason
    return None


def _duration(step: PlanStep) -> float:
    own: float
    if step.method == "manual":
        own = _MANUAL_SECONDS
    elif step.actions:
        own = sum(_action_seconds(a) for a in step.actions)
    elif step.method == "grounded":
        own = _GROUNDED_SECONDS
    else:
        own = 1.0 if step.kind == "decision" else 0.0
    inner = sum(_duration(c) for c in step.children)
    if step.loop is not None:
        inner *= min(step.loop.max_iterations, _ASSUMED_ITERATIONS)
    if step.decision is not None:
        inner += max(
            sum(_duration(s) for s in step.decision.yes),
            sum(_duration(s) for s in step.decision.no),
        )
    return min(float(MAX_ESTIMATE_SECONDS), own + inner)


def _action_seconds(action: Action) -> float:
    if action.type == "wait" and action.timeout_ms is not None and not action.url_contains:
        return min(action.timeout_ms / 1000, 5.0)
    return _ACTION_SECONDS[action.type]


def _flat_value(value: str | int | float | bool) -> str:
    """A flat action's `value` as the text the runner types or compares (JSON spelling)."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _data_value(data: dict[str, Any]) -> str | None:
    for key in ("value", "text"):
        if isinstance(data.get(key), str):
            return str(data[key])
    strings = [v for v in data.values() if isinstance(v, str)]
    return strings[0] if len(strings) == 1 else None


def _assert_action(kind: str | None, value: str | None) -> Action | None:
    if not value:
        return None
    if kind == "urlMatch":
        return Action(type="verify", url_contains=value, instruction=f"URL contains {value}")
    if kind == "textPresent":
        return Action(type="verify", value=value, instruction=f"Page shows the text {value!r}")
    if kind == "selectorVisible":
        return Action(
            type="verify", selector=value, state="visible", instruction=f"{value} is visible"
        )
    return None


def _schema_rule(condition_schema: dict[str, Any] | None, actions: list[Action]) -> str | None:
    """A workflow decision's single boolean condition, if its own extract action returns it."""
    if not condition_schema:
        return None
    props = condition_schema.get("properties")
    if not isinstance(props, dict):
        return None
    booleans = [k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "boolean"]
    if len(booleans) != 1 or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", booleans[0]):
        return None
    for a in actions:
        if a.type == "extract" and isinstance(a.schema_, dict) and booleans[0] in a.schema_:
            rule = f"{a.variable}.{booleans[0]}"
            if a.variable and _is_rule(rule):
                return rule
    return None


def _negated(condition: str) -> str:
    condition = condition.strip()
    return f"not {condition}" if re.fullmatch(r"[\w.]+", condition) else f"not ({condition})"


def _is_rule(text: str) -> bool:
    try:
        rules.parse(text)
    except rules.RuleError:
        return False
    return True


def _css_selector(strategies: list[str] | None) -> str | None:
    for s in strategies or []:
        if _CSS_LIKE.match(s.strip()):
            return s.strip()
    return None


def _first_url(text: str) -> str | None:
    match = _URL.search(text)
    return match.group(0).rstrip(".,;") if match else None


def _first_str(data: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _positive_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return DEFAULT_MAX_ITERATIONS


def _plural(name: str) -> str:
    """`email` -> `emails`: the list a loop's iterator variable is taken from."""
    if "_" in name or not name.isalpha():
        return f"{name}_list"
    if name.endswith("s"):
        return f"{name}_list"
    if name.endswith("y") and len(name) > 1 and name[-2] not in "aeiou":
        return f"{name[:-1]}ies"
    return f"{name}s"


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
