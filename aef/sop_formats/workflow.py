"""The JSON workflow format (meta / execution / config), e.g. gmail-investor-crm.json.

Nodes are `execution.workflow.nodes` with `children` / `parentId`; edges are the `flow` list
(`from`, `to`, `condition`) and a decision's `outboundEdges` (`{"Y": id, "N": id}`). Actions
are read in both shapes: the documented flat `Action` fields (`url`, `selector`, `value`,
`key`, `timeoutMs`, `urlContains`, `attribute`, `many`, `state`, `pattern`, `variable`) and
the nested shape of the application's files (`target.url|selector|url_contains`, `data`,
`timeout`); a flat field wins. Extract results land in `variable` (default: the step id).
`execution.variables` declares the run's non-secret inputs.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aef.models import Action, WorkflowAction, WorkflowDocument
from aef.sop_formats.graph import (
    MAX_TIMEOUT_MS,
    SourceGraph,
    SourceLoop,
    SourceNode,
    branch_of,
    check_counts,
    is_rule,
    positive_int,
    validate_model,
)


def read_workflow(document: dict[str, Any]) -> SourceGraph:
    wf = validate_model(WorkflowDocument, document)
    graph = SourceGraph(format="workflow")
    flow = wf.execution.workflow
    raw_nodes = document["execution"]["workflow"].get("nodes", [])
    outbound_count = sum(len(n.outbound_edges or {}) for n in flow.nodes)
    if wf.execution.variables:
        graph.runtime_vars.update(wf.execution.variables)
    check_counts(len(flow.nodes), len(flow.flow) + outbound_count)
    for index, n in enumerate(flow.nodes):
        node = graph.new_node(
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
        node.actions = [_workflow_action(graph, n.id, a, node) for a in n.actions]
        for a in n.assert_conditions or []:
            verify = _assert_action(a.type, a.value)
            if verify is None:
                graph.warnings.append(
                    f"step {n.id}: assert condition {a.type!r} is not understood; ignored"
                )
            else:
                node.actions.append(verify)
        for service, fields in (n.credentials_required or {}).items():
            node.credentials.extend(f"{service}_{f}" for f in fields)
        if n.type == "error_handler" and n.human_escalate:
            node.manual = True
        node.rule = graph.checked_rule(n.id, n.rule) or _schema_rule(
            n.condition_schema, node.actions
        )
        node.question = n.question
        if node.kind == "loop":
            cfg = n.iterator_config
            iterator = n.iterator or (cfg.item_variable if cfg else None) or "item"
            over = n.over or (cfg.list_variable if cfg else None)
            node.loop = SourceLoop(
                iterator=iterator,
                over=over,
                max_iterations=positive_int(
                    n.max_iterations
                    if n.max_iterations is not None
                    else (cfg.max_iterations if cfg else None)
                ),
                exit_condition=None,
            )
            graph.runtime_vars.update(
                v for v in (iterator, over, cfg.index_variable if cfg else None) if v
            )
        graph.add_node(node)
        for key, target in (n.outbound_edges or {}).items():
            graph.add_edge(n.id, target, branch_of(key, None), key)
    for e in flow.flow:
        graph.add_edge(e.from_, e.to, branch_of(None, e.condition), e.condition)
    if wf.config is not None:
        if wf.config.pause_on_errors is not None:
            graph.defaults["pause_on_errors"] = wf.config.pause_on_errors
        if wf.config.retry_attempts is not None:
            graph.defaults["auto_retry_enabled"] = wf.config.retry_attempts > 0
    graph.title = wf.meta.title if wf.meta is not None else None
    return graph


def _workflow_action(graph: SourceGraph, node_id: str, a: WorkflowAction,
                     node: SourceNode) -> Action:
    """One workflow action as a plan `Action`.

    A flat action of a native type passes through unchanged, so a workflow written in the
    plan's own vocabulary runs as written.
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
        graph.warnings.append(
            f"step {node_id}: action type {a.type!r} is not known to AEF; "
            "run as a natural-language action"
        )
    return Action(type="act", selector=selector, value=value, **common)


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
            if a.variable and is_rule(rule):
                return rule
    return None
