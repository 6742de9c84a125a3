"""The SOP format (meta / public / private): v0.8, and older v0.6 documents.

Nodes are `public.nodes` with `children` / `parentId`, edges `public.edges` labelled by
`decision_path` (Y/N) or `condition`. Concrete actions come from a node's
`automation.instructions` (added by the application's AI enhancement), else the node runs
grounded on its intent. A loop iterates the plural of its `iterator` unless it names `over`.
"""

from __future__ import annotations

import re
from typing import Any

from aef.models import Action, BrowserInstruction, SopDocument
from aef.sop_formats.graph import (
    SourceGraph,
    SourceLoop,
    branch_of,
    check_counts,
    positive_int,
    validate_model,
)

# web URLs, and the schemes a browser would open that the network guard refuses (so a
# navigation to them is a planned navigate the transform warns about, not prose to ground)
_URL = re.compile(
    r"(?:https?|wss?|ftp|file)://[^\s'\"<>)]+"
    r"|\b(?:javascript|data|file|chrome|view-source):[^\s'\"<>]+",
    re.I,
)
_CSS_LIKE = re.compile(r"^(?:[a-zA-Z][\w-]*)?[\[#.][^\s]|^(?:css|xpath|text|role|id)=|^//")


def read_sop(document: dict[str, Any]) -> SourceGraph:
    sop = validate_model(SopDocument, document)
    graph = SourceGraph(format="sop", title=sop.meta.title if sop.meta is not None else None)
    raw_nodes = document["public"]["nodes"]
    check_counts(len(sop.public.nodes), len(sop.public.edges))
    if sop.public.variables:
        graph.runtime_vars.update(sop.public.variables)
        graph.declared.update(sop.public.variables)
    if sop.private is not None:
        for skill in sop.private.skills:
            graph.external.update(skill.variables_in or [])
            graph.external.update(skill.variables_out or [])
    graph.runtime_vars.update(graph.external)
    for index, n in enumerate(sop.public.nodes):
        node = graph.new_node(index, n, raw_nodes[index])
        node.rule = graph.checked_rule(n.id, n.rule)
        node.question = n.question
        if n.automation is not None:
            auto = n.automation
            node.actions = _sop_actions(graph, n.id, auto.instructions)
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
            node.loop = SourceLoop(
                iterator=iterator,
                over=over or _plural(iterator),
                max_iterations=positive_int(
                    extra.get("maxIterations", extra.get("max_iterations"))
                ),
                exit_condition=graph.checked_exit(n.id, n.exit_condition),
            )
            graph.runtime_vars.update({iterator, node.loop.over or iterator})
        graph.add_node(node)
    for e in sop.public.edges:
        graph.add_edge(e.source, e.target, branch_of(e.decision_path, e.condition), e.condition)
    for clarification in sop.public.clarification_requests:
        if clarification.question:
            graph.warnings.append(
                f"open question {clarification.id or ''} "
                f"({clarification.importance or 'unrated'}): {clarification.question}"
            )
    return graph


def _sop_actions(
    graph: SourceGraph, node_id: str, instructions: list[BrowserInstruction]
) -> list[Action]:
    ordered = sorted(
        enumerate(instructions),
        key=lambda p: (p[1].sequence is None, p[1].sequence or 0, p[0]),
    )
    actions: list[Action] = []
    for _, bi in ordered:
        text = (bi.stagehand_instruction or bi.description or "").strip()
        if not text:
            graph.warnings.append(f"step {node_id}: an automation instruction has no text")
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
                graph.warnings.append(
                    f"step {node_id}: automation action type {bi.action_type!r} is not "
                    "known to AEF; run as a natural-language action"
                )
            actions.append(Action(type="act", selector=selector, instruction=text))
    return actions


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


def _plural(name: str) -> str:
    """`email` -> `emails`: the list a loop's iterator variable is taken from."""
    if "_" in name or not name.isalpha():
        return f"{name}_list"
    if name.endswith("s"):
        return f"{name}_list"
    if name.endswith("y") and len(name) > 1 and name[-2] not in "aeiou":
        return f"{name[:-1]}ies"
    return f"{name}s"
