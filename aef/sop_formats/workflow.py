"""The JSON workflow format (meta / execution / config), e.g. gmail-investor-crm.json.

Nodes are `execution.workflow.nodes` with `children` / `parentId`; edges are the `flow` list
(`from`, `to`, `condition`) and a decision's `outboundEdges` (`{"Y": id, "N": id}`). Actions
are read in both shapes: the documented flat `Action` fields (`url`, `selector`, `value`,
`key`, `timeoutMs`, `urlContains`, `attribute`, `many`, `state`, `pattern`, `variable`) and
the nested shape of the application's files (`target.url|selector|url_contains`, `data`,
`timeout`); a flat field wins. Extract results land in `variable` (default: the step id).
`execution.variables` declares the run's non-secret inputs.

The application's newer node types: `decision`, `assert` (its `assertConditions` become verify
actions), `error_handler` (a recovery policy, attached by the transform to the step whose
`error` edge leads to it, or to its container), `list_iterator` (a loop over
`iteratorConfig.listVariable`), and `data_transform` / `generator` / `llm_call` / `filter_list`
(a `ComputeSpec`: data a resolver computes into a variable, not page actions).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aef.models import (
    Action,
    ComputeOperation,
    ComputeSpec,
    RecoveryAction,
    RecoveryPolicy,
    WorkflowAction,
    WorkflowDocument,
    WorkflowNode,
    WorkflowRetryPolicy,
)
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
        declared = wf.execution.variables
        graph.declared.update(declared if isinstance(declared, dict) else dict.fromkeys(declared))
    check_counts(len(flow.nodes), len(flow.flow) + outbound_count)
    for index, n in enumerate(flow.nodes):
        node = graph.new_node(index, n, raw_nodes[index])
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
        if node.type in _COMPUTE:
            node.compute = _compute_spec(graph, n, node)
        if node.type == "error_handler":
            node.handler = _handler(n, node)
            node.manual = bool(n.human_escalate)
        node.recovery = _recovery(n, node)
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
        check = a.assert_config
        state = a.state
        if check is not None:
            selector = selector or check.selector
            state, value = _assertion(graph, node_id, check.assertion_type, check.expected_text,
                                      check.expected_count, state, value)
            if check.timeout is not None and timeout_ms is None:
                common["timeout_ms"] = min(int(check.timeout), MAX_TIMEOUT_MS)
        return Action(
            type="verify",
            selector=selector,
            url_contains=url_contains,
            value=value,
            pattern=a.pattern,
            state=state,
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


_COMPUTE: dict[str, ComputeOperation] = {
    "data_transform": "transform",
    "generator": "generate",
    "llm_call": "llm_call",
    "filter_list": "filter",
}
_FALLBACK_WORDS: dict[str, RecoveryAction] = {
    "skip": "skip",
    "continue": "skip",
    "ignore": "skip",
    "stop": "stop",
    "abort": "stop",
    "fail": "stop",
    "escalate": "escalate",
}
_ASSERT_FAILURE: dict[str, RecoveryAction] = {
    "stop": "stop",
    "continue": "skip",
    "escalate": "escalate",
}


def _compute_spec(graph: SourceGraph, n: WorkflowNode, node: SourceNode) -> ComputeSpec:
    """The data a compute node produces. A generator's extract action (the application's
    shape) is its instruction, output variable and schema; other page actions are not run."""
    extract = next((a for a in node.actions if a.type == "extract"), None)
    rest = [a for a in node.actions if a is not extract and a.type != "verify"]
    if rest:
        graph.warnings.append(
            f"step {n.id}: the {node.type} node's {len(rest)} other action(s) "
            f"({', '.join(a.type for a in rest)}) are not run; it computes data"
        )
    node.actions = [a for a in node.actions if a.type == "verify"]
    lists = n.list_config
    output = (
        n.output_key
        or (lists.output_key if lists else None)
        or (extract.variable if extract else None)
        or n.id
    )
    return ComputeSpec(
        operation=_COMPUTE[node.type],
        instruction=(extract.instruction if extract else None) or node.intent or node.label,
        output=output,
        input=n.input_key or (lists.input_key if lists else None),
        prompt=n.prompt_template or (lists.prompt_template if lists else None),
        function=n.transform_function,
        schema=n.output_schema if n.output_schema is not None else (
            extract.schema_ if extract else None),
    )


def _retries(policy: WorkflowRetryPolicy | None) -> RecoveryPolicy:
    if policy is None:
        return RecoveryPolicy()
    return RecoveryPolicy(
        retries=None if policy.max is None else min(policy.max, 10),
        backoff_ms=list(policy.backoff_ms or []),
    )


def _recovery(n: WorkflowNode, node: SourceNode) -> RecoveryPolicy | None:
    """The node's own policy: `retryPolicy`, `continueOnError` of a list iterator, and an
    `assert_element`'s `failureAction`."""
    policy = _retries(n.retry_policy)
    if node.kind == "loop" and n.iterator_config and n.iterator_config.continue_on_error:
        policy.on_failure = "next_item"
    for a in n.actions:
        failure = (a.assert_config.failure_action or "") if a.assert_config else ""
        if failure.lower() == "retry" and policy.retries is None:
            policy.retries = 1
        elif failure.lower() in _ASSERT_FAILURE and policy.on_failure is None:
            policy.on_failure = _ASSERT_FAILURE[failure.lower()]
    return None if policy == RecoveryPolicy() else policy


def _handler(n: WorkflowNode, node: SourceNode) -> RecoveryPolicy:
    """An `error_handler` node as a policy: a person (`humanEscalate`), its actions as the
    fallback, or the `fallbackAction` it names (skip / stop / retry; other text is shown to
    the person it escalates to)."""
    policy = _retries(n.retry_policy)
    policy.handler = n.id
    fallback = (n.fallback_action or "").strip()
    policy.instruction = node.intent or node.label
    if fallback:
        policy.instruction += f" ({fallback})"
    word = fallback.lower()
    if n.human_escalate:
        policy.on_failure = "escalate"
    elif node.actions:
        policy.on_failure = "fallback"
        policy.actions = list(node.actions)
    elif word == "retry":
        policy.retries = max(policy.retries or 0, 1)
        policy.on_failure = "escalate"
    else:
        policy.on_failure = _FALLBACK_WORDS.get(word, "escalate")
    return policy


def _assertion(graph: SourceGraph, node_id: str, kind: str | None, text: str | None,
               count: int | None, state: str | None, value: str | None
               ) -> tuple[str | None, str | None]:
    """(state, value) of a verify action for an `assertConfig`."""
    kind = (kind or "").strip().lower()
    if kind == "exists":
        return state or "attached", value
    if kind in ("visible", "hidden"):
        return state or kind, value
    if kind == "contains_text":
        return state or "visible", value if value is not None else text
    if kind == "count" and count == 0:
        return state or "detached", value
    graph.warnings.append(
        f"step {node_id}: assertion {kind or 'without a type'!r} is checked only as "
        "'the element is visible'"
    )
    return state or "visible", value
