"""Property tests: any JSON in, an AEF document or ValidationFailed out, and always the same."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aef.errors import ValidationFailed
from aef.models import AefDocument, PlanStep
from aef.transform import TransformResult, transform

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sops"
FIXTURE_DOCS = [
    json.loads((FIXTURES / name).read_text())
    for name in ("investor-crm-sop-v0.8.json", "gmail-investor-crm-workflow.json")
]
NOW = datetime(2025, 6, 1, tzinfo=UTC)

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies --------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities included: they must be refused, not crash
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)
KEYS = ["meta", "public", "private", "execution", "config", "aef", "nodes", "edges", "workflow"]
top_level = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), json_values, max_size=6)

IDS = ["a", "b", "c", "d", "e", "f", "g"]
node_ids = st.sampled_from(IDS)
ref_ids = st.sampled_from([*IDS, "start", "ghost"])
NODE_TYPES = [
    "task",
    "loop",
    "decision",
    "end",
    "ui_interaction",
    "start",
    "compound_task",
    "atomic_task",
    "iterative_loop",
    "list_iterator",
    "error_handler",
    "assert",
    "mystery",
]
conditions = st.sampled_from(["yes", "no", "next", "Y", "N", "true", "all_processed"]) | st.none()
ACTION_TYPES = [
    "navigate",
    "navigate_or_switch_tab",
    "wait",
    "wait_for_navigation",
    "act",
    "click",
    "type",
    "extract",
    "extract_list",
    "visual_scan",
    "conditional_auth",
    "press",
    "assert_element",
    "create_row",
    "hover",
]
placeholder_text = st.sampled_from(
    ["Type {{gmail_email}}", "{{api_key}}", "send the form", "Open {{item.name}}", "update record"]
) | st.text(st.characters(codec="utf-8", min_codepoint=32), max_size=20)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def _sometimes(draw: st.DrawFn, percent: int) -> bool:
    """True about `percent`% of the time (hypothesis favours bounds, so avoid 0 and 99)."""
    return draw(st.integers(0, 99).map(lambda x: 1 <= x <= percent))


def _rare(draw: st.DrawFn, strategy: st.SearchStrategy[Any], percent: int = 25) -> Any:
    """Draw from `strategy` about `percent`% of the time, else None."""
    return draw(strategy) if _sometimes(draw, percent) else None


@st.composite
def graph_ids(draw: st.DrawFn) -> list[str]:
    """Distinct ids, with an occasional duplicate."""
    ids = draw(st.lists(node_ids, unique=True, min_size=0 if _sometimes(draw, 5) else 1))
    if ids and _sometimes(draw, 10):
        ids.append(draw(st.sampled_from(ids)))
    return ids


@st.composite
def reference_strategy(draw: st.DrawFn, ids: list[str]) -> st.SearchStrategy[str]:
    """Existing ids; in some documents also the `start` pseudo-node or an unknown id."""
    known = st.sampled_from(ids) if ids else st.just("ghost")
    if _sometimes(draw, 20):
        return st.one_of(known, st.sampled_from(["start", "ghost"]))
    return known


@st.composite
def edge_pairs(draw: st.DrawFn, refs: st.SearchStrategy[str]) -> list[tuple[str, str]]:
    """Up to 8 edges; a self-edge only now and then."""
    allow_self = _sometimes(draw, 10)
    pair = st.tuples(refs, refs).filter(lambda p: allow_self or p[0] != p[1])
    return draw(st.lists(pair, max_size=8))


@st.composite
def node(draw: st.DrawFn, node_id: str, ids: list[str]) -> dict[str, Any]:
    refs = draw(reference_strategy(ids))
    out: dict[str, Any] = {
        "id": node_id,
        "type": draw(_optional(st.sampled_from(NODE_TYPES))),
        "label": draw(_optional(placeholder_text)),
        "intent": draw(_optional(placeholder_text)),
        "children": _rare(draw, st.lists(refs, max_size=3), 20),
        "parentId": _rare(draw, refs.filter(lambda r: r != node_id), 10),
        "iterator": _rare(draw, st.sampled_from(["email", "row", "item_x"])),
        "rule": _rare(draw, st.sampled_from(["flag", "not a.b == 'x'", "1 +", ""])),
    }
    if draw(st.integers(1, 5)) == 1:
        out["automation"] = {
            "automation_type": draw(st.sampled_from(["ui", "manual", "api"])),
            "human_checkpoint": draw(st.booleans()),
            "instructions": [
                {
                    "sequence": draw(_optional(st.integers(-3, 3))),
                    "action_type": draw(st.sampled_from(["navigate", "click", "type", "zap"])),
                    "stagehand_instruction": draw(placeholder_text),
                    "selector_strategies": draw(st.lists(st.sampled_from(["#q", "a box"]))),
                }
                for _ in range(draw(st.integers(0, 2)))
            ],
        }
    return {k: v for k, v in out.items() if v is not None}


@st.composite
def sop_documents(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(graph_ids())
    nodes = [draw(node(i, ids)) for i in ids]
    refs = draw(reference_strategy(ids))
    edges = [
        {
            "source": source,
            "target": target,
            "condition": draw(conditions),
            "decision_path": draw(_optional(st.sampled_from(["Y", "N"]))),
        }
        for source, target in draw(edge_pairs(refs))
    ]
    return {"meta": {"title": "generated"}, "public": {"nodes": nodes, "edges": edges}}


@st.composite
def workflow_documents(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(graph_ids())
    refs = draw(reference_strategy(ids))
    nodes = []
    for node_id in ids:
        wf_node = draw(node(node_id, ids))
        wf_node.pop("automation", None)
        wf_node["actions"] = [
            {
                "type": draw(st.sampled_from(ACTION_TYPES)),
                "instruction": draw(placeholder_text),
                "target": draw(
                    _optional(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "url": st.sampled_from(["https://x.test/{{base_id}}", "/a"]),
                                "selector": st.just("#b"),
                                "url_contains": st.just("inbox"),
                            },
                        )
                    )
                ),
                "timeout": draw(_optional(st.integers(0, 10**9))),
                "data": draw(
                    _optional(st.dictionaries(st.sampled_from(["text", "k"]), placeholder_text))
                ),
            }
            for _ in range(draw(st.integers(0, 3)))
        ]
        if draw(st.integers(1, 4)) == 1:
            wf_node["credentialsRequired"] = {
                "svc": draw(st.lists(st.sampled_from(["email", "password"])))
            }
        if draw(st.integers(1, 4)) == 1:
            wf_node["outboundEdges"] = {draw(st.sampled_from(["Y", "N", "maybe"])): draw(refs)}
        nodes.append(wf_node)
    flow = [
        {"from": source, "to": target, "condition": draw(conditions)}
        for source, target in draw(edge_pairs(refs))
    ]
    return {
        "meta": {"id": "wf", "title": "generated"},
        "execution": {"workflow": {"nodes": nodes, "flow": flow}},
        "config": {"retryAttempts": draw(st.integers(0, 3))},
    }


def _container_paths(doc: Any) -> list[tuple[Any, ...]]:
    paths: list[tuple[Any, ...]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        paths.append(path)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            if isinstance(child, dict | list):
                stack.append((child, (*path, key)))
    return sorted(paths, key=repr)


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> dict[str, Any]:
    """A real document with a few random edits: values replaced, keys dropped, items copied."""
    doc = copy.deepcopy(draw(st.sampled_from(FIXTURE_DOCS)))
    for _ in range(draw(st.integers(1, 4))):
        container = _at(doc, draw(st.sampled_from(_container_paths(doc))))
        if not container:
            continue
        key = draw(
            st.sampled_from(
                sorted(container) if isinstance(container, dict) else range(len(container))
            )
        )
        edit = draw(st.sampled_from(["replace", "delete", "duplicate", "retype"]))
        if edit == "replace":
            container[key] = draw(json_values)
        elif edit == "delete":
            del container[key]
        elif edit == "duplicate" and isinstance(container, list):
            container.append(copy.deepcopy(container[key]))
        elif edit == "retype" and isinstance(container[key], str):
            container[key] = draw(
                st.sampled_from(["", "loop", "decision", "L1_C1_open_email", "E_end"])
            )
    return doc


configs = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "checkpointMode": st.sampled_from(["all_steps", "risky_steps", "none", "custom", "bogus"]),
        "customCheckpoints": st.lists(st.sampled_from([*IDS, "E_end", "add_to_crm"]), max_size=3),
        "checkpointTimeout": st.integers(-5, 100_000),
        "stepTimeout": st.integers(0, 4000),
        "autoRetryEnabled": st.booleans(),
    },
)

# --- properties --------------------------------------------------------------------------


def outcome(doc: Any, config: Any = None) -> TransformResult | ValidationFailed:
    """The transform may return a result or raise ValidationFailed; anything else fails."""
    try:
        return transform(doc, config, now=NOW)
    except ValidationFailed as exc:
        assert exc.status == 422 and exc.detail
        return exc


def walk(steps: list[PlanStep]) -> Iterator[PlanStep]:
    for step in steps:
        yield step
        yield from walk(step.children)
        if step.decision is not None:
            yield from walk(step.decision.yes)
            yield from walk(step.decision.no)


def check_result(doc: dict[str, Any], result: TransformResult) -> None:
    text = json.dumps(result.document, allow_nan=False)
    assert json.loads(text) == result.document
    rest = {k: v for k, v in result.document.items() if k != "aef"}
    assert rest == {k: v for k, v in doc.items() if k != "aef"}
    AefDocument.model_validate(result.document)
    public = doc.get("public")
    if isinstance(public, dict) and "nodes" in public:
        source_nodes = public["nodes"]
    else:
        source_nodes = doc["execution"]["workflow"]["nodes"]
    counts = Counter(step.id for step in walk(result.plan))
    assert set(counts) == {n["id"] for n in source_nodes}
    assert set(counts.values()) == {1}
    assert result.estimated_step_count == len(source_nodes)
    assert result.estimated_duration_seconds >= 0


def check(doc: Any, config: Any = None) -> None:
    before = copy.deepcopy(doc)
    first = outcome(doc, config)
    assert doc == before or doc != doc, "the input must not be modified"  # NaN != NaN
    second = outcome(copy.deepcopy(doc), config)
    if isinstance(first, ValidationFailed):
        assert isinstance(second, ValidationFailed) and second.detail == first.detail
        return
    assert isinstance(second, TransformResult)
    assert json.dumps(first.document, sort_keys=True) == json.dumps(second.document, sort_keys=True)
    assert first.warnings == second.warnings
    check_result(doc, first)


@PROPERTY_SETTINGS
@given(doc=json_values)
def test_any_json_value(doc: Any) -> None:
    check(doc)


@PROPERTY_SETTINGS
@given(doc=top_level)
def test_any_json_object(doc: dict[str, Any]) -> None:
    check(doc)


@PROPERTY_SETTINGS
@given(doc=sop_documents(), config=configs)
def test_sop_shaped_documents(doc: dict[str, Any], config: Any) -> None:
    check(doc, config)


@PROPERTY_SETTINGS
@given(doc=workflow_documents(), config=configs)
def test_workflow_shaped_documents(doc: dict[str, Any], config: Any) -> None:
    check(doc, config)


@PROPERTY_SETTINGS
@given(doc=mutated_fixtures(), config=configs)
def test_mutated_fixtures(doc: dict[str, Any], config: Any) -> None:
    check(doc, config)


def test_the_generators_reach_successful_transforms() -> None:
    """Guard against strategies that only ever produce rejected documents."""
    ok = 0

    @settings(max_examples=100, deadline=None, database=None)
    @given(doc=sop_documents() | workflow_documents())
    def count(doc: dict[str, Any]) -> None:
        nonlocal ok
        ok += isinstance(outcome(doc), TransformResult)

    count()
    assert ok >= 10
