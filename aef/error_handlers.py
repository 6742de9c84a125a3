"""Error handlers become the recovery policy of the step they handle, not steps of their own.

A node is the error handler of step S when an edge from S with an error condition (`error`,
`on_error`, `failure`, `catch`, ...) leads to it, and an `error_handler` node that no edge
reaches or leaves handles the failures of the container that lists it. Such a node leaves
the graph; its policy (`aef.sop_formats.graph.handler_policy`) is merged into the step's
`recovery`. An `error_handler` reached by the normal flow stays a step (the application's
2FA escalation is one: a manual step when it escalates to a person).
"""

from __future__ import annotations

from aef.errors import ValidationFailed
from aef.models import RecoveryPolicy
from aef.sop_formats.graph import SourceEdge, SourceNode, handler_policy


def attach_error_handlers(
    nodes: dict[str, SourceNode], edges: list[SourceEdge], start_targets: list[str]
) -> list[SourceEdge]:
    """Remove the handler nodes from `nodes` (in place) and merge their policies into the
    steps they handle. Returns the edges that remain."""
    handled: dict[str, list[str]] = {}
    for e in edges:
        if e.on_error and e.source != e.target:
            handled.setdefault(e.target, []).append(e.source)
    flowing = [e for e in edges if not e.on_error]
    reached = {e.target for e in flowing if e.source != e.target} | set(start_targets)
    leaving = {e.source for e in flowing if e.source != e.target}
    listed_by: dict[str, list[str]] = {}
    for node in nodes.values():
        for child in dict.fromkeys(node.declared_children):
            listed_by.setdefault(child, []).append(node.id)
    for node in nodes.values():
        owners = listed_by.get(node.id) or ([node.declared_parent] if node.declared_parent else [])
        if (node.type == "error_handler" and node.id not in handled and node.id not in reached
                and node.id not in leaving and len(owners) == 1 and owners[0] != node.id):
            handled[node.id] = owners
    _check(nodes, handled, reached, listed_by)
    for handler_id, step_ids in handled.items():
        policy = handler_policy(nodes[handler_id])
        for step_id in dict.fromkeys(step_ids):
            step = nodes[step_id]
            step.recovery = _merged(step.recovery, policy)
    for handler_id in handled:
        del nodes[handler_id]
    for node in nodes.values():
        node.declared_children = [c for c in node.declared_children if c not in handled]
    return [e for e in flowing if e.source not in handled and e.target not in handled]


def _check(nodes: dict[str, SourceNode], handled: dict[str, list[str]], reached: set[str],
           listed_by: dict[str, list[str]]) -> None:
    problems: list[str] = []
    ids: list[str] = []
    by_step: dict[str, list[str]] = {}
    for handler_id, step_ids in handled.items():
        for step_id in dict.fromkeys(step_ids):
            by_step.setdefault(step_id, []).append(handler_id)
        if handler_id in reached:
            problems.append(f"node {handler_id} is an error handler and also a step the flow "
                            "reaches; give the flow its own node")
            ids.append(handler_id)
        if any(n.declared_parent == handler_id for n in nodes.values()) or (
                nodes[handler_id].declared_children):
            problems.append(f"error handler {handler_id} contains steps; a handler is one step")
            ids.append(handler_id)
        if len(listed_by.get(handler_id, [])) > 1:
            problems.append(f"error handler {handler_id} is listed by several containers")
            ids.append(handler_id)
    for step_id, handler_ids in by_step.items():
        if step_id in handled:
            problems.append(f"error handler {step_id} has an error handler itself "
                            f"({', '.join(handler_ids)})")
            ids.append(step_id)
        if len(handler_ids) > 1:
            problems.append(f"step {step_id} has {len(handler_ids)} error handlers: "
                            f"{', '.join(handler_ids)}")
            ids.extend([step_id, *handler_ids])
    if problems:
        raise ValidationFailed("; ".join(problems[:10]), problems=problems[:50],
                               ids=list(dict.fromkeys(ids)))


def _merged(own: RecoveryPolicy | None, handler: RecoveryPolicy) -> RecoveryPolicy:
    """The handler decides what happens after the retries; the step's own retry settings win."""
    if own is None:
        return handler.model_copy(deep=True)
    return handler.model_copy(update={
        "retries": own.retries if own.retries is not None else handler.retries,
        "backoff_ms": own.backoff_ms or handler.backoff_ms,
    }, deep=True)
