"""Property tests: any JSON in, an AEF document or ValidationFailed out, and always the same."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aef.errors import ValidationFailed
from aef.models import AefDocument, PlanStep
from aef.transform import TransformResult, transform
from tests.fixtures import GMAIL_WORKFLOW, INVESTOR_CRM_SOP, load_sop

FIXTURE_DOCS = [load_sop(INVESTOR_CRM_SOP), load_sop(GMAIL_WORKFLOW)]
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
    "data_transform",
    "generator",
    "llm_call",
    "filter_list",
    "mystery",
]
conditions = (
    st.sampled_from(["yes", "no", "next", "Y", "N", "true", "all_processed", "error", "on_error"])
    | st.none()
)
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
URLS = [
    "https://x.test/{{base_id}}",
    "/a",
    "file:///etc/passwd",
    "http://0xA9FEA9FE/",
    "{{base_url}}/inbox",
    "http://[::ffff:169.254.169.254]/",
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
def newer_node_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Fields of the newer node types (error handlers, data steps, list iterators, asserts)."""
    names = st.sampled_from(["rows", "item", "a.b", "{{x}}", ""])
    optional = {
        "humanEscalate": st.booleans(),
        "fallbackAction": st.sampled_from(["skip", "stop", "retry", "pause_for_human", ""]),
        "retryPolicy": st.fixed_dictionaries(
            {}, optional={"max": st.integers(-1, 20), "backoffMs": st.lists(st.integers(-5, 9))}
        ),
        "iteratorConfig": st.fixed_dictionaries(
            {}, optional={"listVariable": names, "itemVariable": names,
                          "continueOnError": st.booleans(), "maxIterations": st.integers(-2, 9)}
        ),
        "listConfig": st.fixed_dictionaries({}, optional={"inputKey": names, "outputKey": names}),
        "inputKey": names,
        "outputKey": names,
        "transformFunction": st.just("d => d"),
        "promptTemplate": st.just("{{input}} and {{other}}"),
        "assertConditions": st.lists(
            st.fixed_dictionaries({"type": st.sampled_from(["urlMatch", "textPresent", "odd"]),
                                   "value": st.sampled_from(["x", ""])}), max_size=2),
    }
    if not _sometimes(draw, 30):
        return {}
    keys = draw(st.lists(st.sampled_from(sorted(optional)), max_size=3, unique=True))
    return {key: draw(optional[key]) for key in keys}


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
                                "url": st.sampled_from(URLS),
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
        wf_node.update(draw(newer_node_fields()))
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
    source_ids = {n["id"] for n in source_nodes}
    steps = list(walk(result.plan))
    counts = Counter(step.id for step in steps)
    assert set(counts.values()) <= {1}, "a step id appears twice"
    # every node is one step, except error handlers (a step's recovery) and the copies of a
    # node shared by two branches that it cannot be merged after (`<id>@<container>`)
    handlers = {s.recovery.handler for s in steps if s.recovery and s.recovery.handler}
    copies = {i for i in counts if i not in source_ids}
    assert all(i.split("@", 1)[0] in source_ids and i.split("@", 1)[1].rstrip("'") in source_ids
               for i in copies), copies
    assert set(counts) - copies | handlers == source_ids
    assert not handlers & set(counts)
    assert result.estimated_step_count == len(steps)
    assert result.estimated_duration_seconds >= 0
    covered = {c for s in steps if s.checkpoint for c in s.checkpoint.covers}
    assert covered <= set(counts), "a checkpoint covers a step that is not in the plan"
    assert {i.name for i in result.inputs} >= {c for s in steps for c in s.credentials}


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
    """Guard against strategies that only ever produce rejected documents. Derandomized: a
    guard on the strategies, not a search, so one unlucky draw (8 of 100 once) fails nothing."""
    ok = 0

    @settings(max_examples=100, deadline=None, database=None, derandomize=True)
    @given(doc=sop_documents() | workflow_documents())
    def count(doc: dict[str, Any]) -> None:
        nonlocal ok
        ok += isinstance(outcome(doc), TransformResult)

    count()
    assert ok >= 10, ok


@st.composite
def shared_child_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A decision whose two branch containers both list `x`, at any position, with any flow
    inside them: a converging tail, a shared middle, or shapes to refuse."""
    p_children = draw(st.permutations(["p1", "p2", "x"]))
    q_children = draw(st.permutations(["q1", "x"]))
    inner = st.sampled_from(["p1", "p2", "q1", "x"])
    flow = [{"from": a, "to": b} for a, b in draw(st.lists(st.tuples(inner, inner), max_size=5))
            if a != b]
    nodes = [
        {"id": "d", "type": "decision", "label": "Which?", "rule": "kind == 1",
         "outboundEdges": {"Y": "p", "N": "q"}},
        {"id": "p", "type": "compound_task", "label": "P", "children": p_children},
        {"id": "q", "type": "compound_task", "label": "Q", "children": q_children},
        *({"id": i, "type": "atomic_task", "label": f"Fill the {i} field",
           "actions": [{"type": "act", "instruction": f"Type {{{{v}}}} into the {i} field"}]}
          for i in ("p1", "p2", "q1")),
        {"id": "x", "type": draw(st.sampled_from(["atomic_task", "generator"])),
         "label": "Save", "actions": [{"type": "act", "instruction": "Click the Save button"}]},
        {"id": "after", "type": "atomic_task", "label": "After"},
    ]
    if draw(st.booleans()):
        flow.append({"from": "p", "to": "after"})
        flow.append({"from": "q", "to": "after"})
    return {"meta": {"title": "shared"},
            "execution": {"workflow": {"nodes": nodes, "flow": flow}, "variables": ["kind"]}}


def test_shared_children_run_once_or_once_per_branch() -> None:
    shapes: Counter[str] = Counter()

    @settings(max_examples=150, deadline=None, database=None)
    @given(doc=shared_child_documents(), config=configs)
    def run(doc: dict[str, Any], config: Any) -> None:
        check(doc, config)
        result = outcome(doc, config)
        if isinstance(result, ValidationFailed):
            shapes["refused"] += 1
            assert "x" in result.extra.get("ids", []) or result.detail
            return
        top = [s.id for s in result.plan]
        if "x" in top:  # merged: once, after the decision, never inside a branch
            shapes["merged"] += 1
            assert top.index("x") == top.index("d") + 1
        else:  # copied: one per branch
            shapes["copied"] += 1
            ids = {s.id for s in walk(result.plan)}
            assert {"x", "x@q"} <= ids or {"x", "x@p"} <= ids

    run()
    assert shapes["merged"] and shapes["copied"], shapes
