"""The normalized graph every source format is read into (nodes, edges, what runs produce).

A reader (`aef.sop_formats.sop`, `aef.sop_formats.workflow`) fills one `SourceGraph`; the
transform orders it into a plan without knowing which format it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from aef import rules
from aef.errors import ValidationFailed
from aef.models import (
    Action,
    ComputeSpec,
    RecoveryPolicy,
    SopDocument,
    SopNode,
    WorkflowDocument,
    WorkflowNode,
)

SourceFormat = Literal["sop", "workflow"]
Branch = Literal["yes", "no"]
_M = TypeVar("_M", bound=BaseModel)

DEFAULT_MAX_ITERATIONS = 50
MAX_NODES = 2_000
MAX_EDGES = 10_000
MAX_TIMEOUT_MS = 3_600_000
MAX_LISTED = 10

KIND_BY_TYPE: dict[str, str] = {
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
    "data_transform": "task",
    "generator": "task",
    "llm_call": "task",
    "filter_list": "task",
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

YES = frozenset({"y", "yes", "true"})
NO = frozenset({"n", "no", "false"})
# An edge with one of these conditions leads to the source node's error handler.
ON_ERROR = frozenset(
    {"error", "on_error", "onerror", "on-error", "failure", "on_failure", "onfailure", "fail",
     "failed", "catch", "exception"}
)


@dataclass
class SourceLoop:
    iterator: str
    over: str | None
    max_iterations: int
    exit_condition: str | None


@dataclass
class SourceNode:
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
    loop: SourceLoop | None = None
    rule: str | None = None
    question: str | None = None
    credentials: list[str] = field(default_factory=list)
    risk_text: str = ""
    risky_action: bool = False
    compute: ComputeSpec | None = None  # data_transform, generator, llm_call, filter_list
    recovery: RecoveryPolicy | None = None  # the node's own (retryPolicy, continueOnError)
    handler: RecoveryPolicy | None = None  # what it does as another step's error handler


@dataclass(frozen=True)
class SourceEdge:
    source: str
    target: str
    branch: Branch | None
    condition: str | None

    @property
    def on_error(self) -> bool:
        """The edge leads to the source's error handler, not to the next step."""
        return (self.condition or "").strip().lower() in ON_ERROR


@dataclass
class SourceGraph:
    """What a reader found: nodes by id (first of duplicates kept), edges, run-time names."""

    format: SourceFormat
    title: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # AefConfig values the source sets
    nodes: dict[str, SourceNode] = field(default_factory=dict)
    edges: list[SourceEdge] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    runtime_vars: set[str] = field(default_factory=set)  # names a run sets, not credentials
    declared: dict[str, Any] = field(default_factory=dict)  # variables the document declares
    external: set[str] = field(default_factory=set)  # set outside the steps (SOP skills)
    warnings: list[str] = field(default_factory=list)

    def new_node(self, index: int, n: SopNode | WorkflowNode, raw: Any) -> SourceNode:
        """A node of either format (they share id, type, label, intent, context, parentId,
        children); an unknown or missing type is a task, with a warning."""
        node_id, node_type = n.id, n.type
        raw_type = (node_type or "").strip().lower()
        kind = KIND_BY_TYPE.get(raw_type)
        if kind is None:
            if raw_type:
                self.warnings.append(
                    f"step {node_id}: node type {node_type!r} is not known to AEF; "
                    "run as a natural-language step"
                )
            else:
                self.warnings.append(f"step {node_id}: node has no type; treated as a task")
            kind = "task"
        return SourceNode(
            id=node_id,
            index=index,
            type=raw_type,
            kind=kind,
            label=(n.label or "").strip() or node_id,
            intent=(n.intent or "").strip(),
            context=(n.context or "").strip(),
            id_path=n.id_path if isinstance(n, SopNode) else None,
            declared_parent=n.parent_id,
            declared_children=list(n.children or []),
            raw=raw,
            manual=kind == "manual",
        )

    def add_node(self, node: SourceNode) -> None:
        """Record the node; duplicates are collected and reported by the transform."""
        for a in node.actions:
            if a.type == "extract" and a.variable:
                self.runtime_vars.add(a.variable)
            if a.credential_field:
                node.credentials.append(a.credential_field)
        if node.compute is not None:
            self.runtime_vars.add(node.compute.output)
        node.risk_text = " ".join(
            [node.label, node.intent, *(a.instruction or "" for a in node.actions)]
        )
        if node.id in self.nodes:
            self.duplicates.append(node.id)
        else:
            self.nodes[node.id] = node

    def add_edge(self, source: str, target: str, branch: Branch | None, cond: str | None) -> None:
        self.edges.append(SourceEdge(source, target, branch, cond))

    def checked_rule(self, node_id: str, rule: str | None) -> str | None:
        """A decision rule the runner can evaluate (aef.rules), else None: a person decides."""
        return self._evaluable(node_id, "rule", rule, "a checkpoint will ask instead")

    def checked_exit(self, node_id: str, condition: str | None) -> str | None:
        """The runner evaluates exit conditions as rules; prose is dropped with a warning."""
        return self._evaluable(
            node_id, "exit condition", condition, "the loop runs over all its items"
        )

    def _evaluable(self, node_id: str, what: str, text: str | None, otherwise: str) -> str | None:
        if text is None or not text.strip():
            return None
        if is_rule(text):
            return text.strip()
        self.warnings.append(
            f"step {node_id}: {what} {text[:80]!r} is not an expression AEF can evaluate; "
            f"{otherwise}"
        )
        return None


# --------------------------------------------------------------------------------------
# Helpers shared by the readers (and the transform's config parsing)
# --------------------------------------------------------------------------------------


def validate_model(model: type[_M], data: dict[str, Any], root: str = "") -> _M:
    """`model.model_validate(data)`, with every problem named by its location in a 422."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{_loc(root, err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        ]
        expected = {SopDocument: "SOP", WorkflowDocument: "JSON workflow"}.get(model, "config")
        raise ValidationFailed(
            f"the {root or 'document'} does not match the {expected} format: {join(problems)}",
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


def join(problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def check_counts(nodes: int, edges: int) -> None:
    if nodes > MAX_NODES:
        raise ValidationFailed(f"the document has {nodes} nodes; at most {MAX_NODES} are allowed")
    if edges > MAX_EDGES:
        raise ValidationFailed(f"the document has {edges} edges; at most {MAX_EDGES} are allowed")


def branch_of(decision_path: str | None, condition: str | None) -> Branch | None:
    """The decision branch an edge label names (`Y`, `yes`, `true`, `N`, ...), if any."""
    for value in (decision_path, condition):
        if value is None:
            continue
        key = value.strip().lower()
        if key in YES:
            return "yes"
        if key in NO:
            return "no"
    return None


def is_rule(text: str) -> bool:
    try:
        rules.parse(text)
    except rules.RuleError:
        return False
    return True


def positive_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return DEFAULT_MAX_ITERATIONS


def handler_policy(node: SourceNode) -> RecoveryPolicy:
    """What `node` does as the error handler of another step: its own `handler` policy (an
    `error_handler` node), else escalate to a person for a manual node or one without
    actions, else perform its actions as the fallback."""
    if node.handler is not None:
        return node.handler
    instruction = node.intent or node.label
    if node.manual or not node.actions:
        return RecoveryPolicy(on_failure="escalate", instruction=instruction, handler=node.id)
    return RecoveryPolicy(
        on_failure="fallback", instruction=instruction, actions=node.actions, handler=node.id
    )
