"""The demo workflow (local/demo/workflows/investor-crm-demo.json): well-formed, every placeholder
defined on every path before it is used, and — walked by a small reference interpreter with
real Chromium — it turns the seeded site into the expected end state (2 added, 1 updated,
3 processed, 2 skipped)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from aef import rules
from local.demo import DEMO_EMAIL, DEMO_PASSWORD, WORKFLOW_PATH, DemoServer

ACTION_TYPES = {
    "navigate", "click", "fill", "type", "select", "check", "uncheck", "press", "scroll", "wait",
    "extract", "verify", "upload", "download", "act",
}  # fmt: skip
ACTION_FIELDS = {
    "type", "selector", "url", "value", "key", "instruction", "timeoutMs", "urlContains",
    "variable", "attribute", "many", "pattern", "state", "credentialField", "schema",
}  # fmt: skip
SUBSTITUTED_FIELDS = ("url", "value", "selector", "instruction")
NODE_TYPES = {"compound_task", "atomic_task", "iterative_loop", "decision"}
RUNTIME_VARIABLES = {"base_url"}  # supplied when the execution starts
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return json.loads(WORKFLOW_PATH.read_text())


class Graph:
    """The workflow's nodes and flow, with the sibling-chain view both checks below walk."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.nodes = {n["id"]: n for n in doc["execution"]["workflow"]["nodes"]}
        self.flow = doc["execution"]["workflow"]["flow"]

    def parent(self, node_id: str) -> str | None:
        parent: str | None = self.nodes[node_id].get("parentId")
        return parent

    def siblings(self, parent: str | None) -> list[str]:
        if parent is None:
            return [i for i, n in self.nodes.items() if "parentId" not in n]
        return list(self.nodes[parent]["children"])

    def entry(self, parent: str | None) -> str:
        ids = self.siblings(parent)
        targets = {e["to"] for e in self.flow if e["from"] in ids}
        starts = [i for i in ids if i not in targets]
        assert len(starts) == 1, f"{parent or 'top level'} has entries {starts}"
        return starts[0]

    def next(self, node_id: str, condition: str | None = None) -> str | None:
        targets = [
            e["to"] for e in self.flow if e["from"] == node_id and e.get("condition") == condition
        ]
        assert len(targets) <= 1, f"{node_id} has several {condition or 'plain'} edges"
        return targets[0] if targets else None

    def credentials(self) -> set[str]:
        return {
            f"{service}_{name}"
            for n in self.nodes.values()
            for service, names in n.get("credentialsRequired", {}).items()
            for name in names
        }


def placeholders(action: dict[str, Any]) -> set[str]:
    return {
        match.split(".")[0]
        for name in SUBSTITUTED_FIELDS
        for match in PLACEHOLDER.findall(str(action.get(name, "")))
    }


# --- static checks --------------------------------------------------------------------------


def test_document_shape(workflow: dict[str, Any]) -> None:
    assert set(workflow) == {"meta", "execution", "config"}
    assert workflow["meta"]["id"] == "investor-crm-demo"
    graph = Graph(workflow)
    assert len(graph.nodes) == len(workflow["execution"]["workflow"]["nodes"]), "duplicate ids"
    for node in graph.nodes.values():
        assert node["type"] in NODE_TYPES, node["id"]
        assert node["label"] and node["intent"], node["id"]
        for child in node.get("children", []):
            assert graph.parent(child) == node["id"], f"{child} does not point back to its parent"
        if "parentId" in node:
            assert node["id"] in graph.nodes[node["parentId"]]["children"]
        for action in node.get("actions", []):
            assert action["type"] in ACTION_TYPES, (node["id"], action)
            assert set(action) <= ACTION_FIELDS, (node["id"], set(action) - ACTION_FIELDS)
            if action["type"] == "act":
                assert action.get("instruction"), node["id"]
    for edge in graph.flow:
        assert edge["from"] in graph.nodes and edge["to"] in graph.nodes, edge
        # Edges join siblings; a container's body is given by its children.
        assert graph.parent(edge["from"]) == graph.parent(edge["to"]), edge
        assert edge.get("condition") in (None, "yes", "no"), edge


def test_decisions_and_loop(workflow: dict[str, Any]) -> None:
    graph = Graph(workflow)
    decisions = {i: n for i, n in graph.nodes.items() if n["type"] == "decision"}
    assert {n["rule"] for n in decisions.values()} == {
        'email_category == "Investor"',
        "crm_match_count > 0",
    }
    for node_id, node in decisions.items():
        rules.parse(node["rule"])
        assert node["question"]
        assert graph.next(node_id, "yes") and graph.next(node_id, "no"), node_id
        assert graph.next(node_id) is None, f"{node_id} has an unconditional edge"
    loop = graph.nodes["email_processing_loop"]
    assert loop["type"] == "iterative_loop"
    assert (loop["over"], loop["iterator"]) == ("emails", "email_id")


def test_writes_are_recognisable_as_risky(workflow: dict[str, Any]) -> None:
    graph = Graph(workflow)
    assert graph.nodes["add_investor_record"]["label"] == "Add investor record to CRM"
    assert graph.nodes["update_investor_record"]["label"] == "Update investor record"
    # The decision that chooses between them is the only way in.
    assert graph.next("in_crm_decision", "yes") == "update_investor_record"
    assert graph.next("in_crm_decision", "no") == "add_investor_record"
    # A mix of concrete and grounded actions, so both rungs of the ladder run.
    actions = [a for n in graph.nodes.values() for a in n.get("actions", [])]
    assert any(a["type"] == "act" for a in actions)
    assert sum("selector" in a for a in actions) > 10


def test_every_placeholder_is_defined_before_use(workflow: dict[str, Any]) -> None:
    """Must-defined analysis: each placeholder is defined on *every* path that reaches it."""
    graph = Graph(workflow)
    credentials = graph.credentials()
    assert credentials == {"demo_email", "demo_password"}
    used: set[str] = set()

    def check_node(node_id: str, defined: frozenset[str]) -> list[frozenset[str]]:
        node = graph.nodes[node_id]
        for action in node.get("actions", []):
            missing = placeholders(action) - defined - credentials - RUNTIME_VARIABLES
            assert not missing, f"{node_id}: {missing} used before it is defined"
            used.update(placeholders(action))
            if field := action.get("credentialField"):
                assert field in credentials, node_id
            if action["type"] == "extract":
                defined = defined | {action["variable"]}
        if node["type"] == "iterative_loop":
            assert node["over"] in defined, f"loop over undefined {node['over']}"
            walk(graph.entry(node_id), defined | {node["iterator"]})
            return [defined]  # the body may run zero times: nothing it defines escapes
        if node.get("children"):
            return walk(graph.entry(node_id), defined)
        return [defined]

    def walk(node_id: str, defined: frozenset[str]) -> list[frozenset[str]]:
        node = graph.nodes[node_id]
        if node["type"] == "decision":
            missing = rules.parse(node["rule"]).variables - defined
            assert not missing, f"{node_id}: rule reads undefined {missing}"
            return [
                out
                for condition in ("yes", "no")
                for out in walk(graph.next(node_id, condition) or "", defined)
            ]
        outs = check_node(node_id, defined)
        following = graph.next(node_id)
        if following is None:
            return outs
        return [end for out in outs for end in walk(following, out)]

    walk(graph.entry(None), frozenset())
    env_urls = [t["url"] for t in workflow["execution"]["environment"]["required_tabs"]]
    assert all(set(PLACEHOLDER.findall(u)) <= RUNTIME_VARIABLES for u in env_urls)
    assert {"demo_email", "demo_password", "base_url", "email_id", "crm_record_id"} <= used


def test_transform_keeps_the_workflow_intact(workflow: dict[str, Any]) -> None:
    """The contract with aef.transform: concrete actions, loop and rules pass through as is."""
    from aef.models import PlanStep
    from aef.transform import transform

    def flatten(steps: list[PlanStep]) -> Iterator[PlanStep]:
        for step in steps:
            yield step
            yield from flatten(step.children)
            if step.decision is not None:
                yield from flatten(step.decision.yes)
                yield from flatten(step.decision.no)

    result = transform(workflow)
    assert result.warnings == []
    steps = {s.id: s for s in flatten(result.plan)}
    assert set(steps) == set(Graph(workflow).nodes)
    loop = steps["email_processing_loop"].loop
    assert loop is not None
    assert (loop.over, loop.iterator, loop.max_iterations) == ("emails", "email_id", 20)
    for decision_id, rule in (
        ("is_investor_decision", 'email_category == "Investor"'),
        ("in_crm_decision", "crm_match_count > 0"),
    ):
        decision = steps[decision_id].decision
        assert decision is not None and decision.rule == rule
    for node in workflow["execution"]["workflow"]["nodes"]:
        planned = [a.model_dump(by_alias=True) for a in steps[node["id"]].actions]
        assert planned == node.get("actions", []), node["id"]
    for write in ("add_investor_record", "update_investor_record"):
        assert steps[write].risky and steps[write].checkpoint is not None, write
    assert {c for s in steps.values() for c in s.credentials} <= Graph(workflow).credentials()


# --- run it against the site ----------------------------------------------------------------


class ReferenceRunner:
    """Just enough of a runner to prove the workflow and the site fit together.

    Concrete actions run as written; ``act`` instructions are grounded by the two phrasings
    the workflow uses ("Type X into the Y field", "Click the Y button") via labels and roles.
    """

    def __init__(self, page: Page, graph: Graph, variables: dict[str, Any]) -> None:
        self.page, self.graph = page, graph
        self.variables = variables
        self.secrets = {"demo_email": DEMO_EMAIL, "demo_password": DEMO_PASSWORD}
        self.trace: list[str] = []

    def fill_in(self, text: str) -> str:
        def value(match: re.Match[str]) -> str:
            head, *rest = match.group(1).split(".")
            current: Any = self.variables.get(head, self.secrets.get(head))
            for part in rest:
                current = current[part]
            assert current is not None, match.group(0)
            return str(current)

        return PLACEHOLDER.sub(value, text)

    async def run(self) -> None:
        await self.chain(self.graph.entry(None))

    async def chain(self, node_id: str | None) -> None:
        while node_id is not None:
            node = self.graph.nodes[node_id]
            if node["type"] == "decision":
                branch = "yes" if rules.evaluate(node["rule"], self.variables) else "no"
                self.trace.append(f"{node_id}={branch}")
                node_id = self.graph.next(node_id, branch)
                continue
            await self.node(node)
            node_id = self.graph.next(node_id)

    async def node(self, node: dict[str, Any]) -> None:
        self.trace.append(node["id"])
        for action in node.get("actions", []):
            await self.action(action)
        if node["type"] == "iterative_loop":
            for item in self.variables[node["over"]][: node.get("maxIterations", 100)]:
                self.variables[node["iterator"]] = item
                await self.chain(self.graph.entry(node["id"]))
        elif node.get("children"):
            await self.chain(self.graph.entry(node["id"]))

    async def action(self, action: dict[str, Any]) -> None:
        page, kind = self.page, action["type"]
        a: dict[str, Any] = {
            k: self.fill_in(v) if k in SUBSTITUTED_FIELDS else v for k, v in action.items()
        }
        timeout = float(a.get("timeoutMs", 10_000))
        if kind == "navigate":
            response = await page.goto(a["url"])
            assert response is not None and response.ok, a["url"]
        elif kind in ("wait", "verify"):
            if "urlContains" in a:
                await page.wait_for_url(lambda url: a["urlContains"] in url, timeout=timeout)
            if "selector" in a:
                await page.locator(a["selector"]).first.wait_for(
                    state=a.get("state", "visible"), timeout=timeout
                )
        elif kind == "fill":
            await page.locator(a["selector"]).fill(a["value"], timeout=timeout)
        elif kind == "click":
            await page.locator(a["selector"]).click(timeout=timeout)
        elif kind == "press":
            await page.locator(a["selector"]).press(a["key"], timeout=timeout)
        elif kind == "extract":
            self.variables[a["variable"]] = await self.extract(a)
        elif kind == "act":
            await self.act(a["instruction"], timeout)
        else:
            raise AssertionError(f"the reference runner does not know {kind!r}")

    async def extract(self, a: dict[str, Any]) -> Any:
        elements = self.page.locator(a["selector"])
        if a.get("many"):
            handles = await elements.all()
            return [await self.read(h, a.get("attribute")) for h in handles]
        return await self.read(elements.first, a.get("attribute"))

    @staticmethod
    async def read(locator: Any, attribute: str | None) -> str:
        if attribute:
            return str(await locator.get_attribute(attribute))
        return str(await locator.inner_text()).strip()

    async def act(self, instruction: str, timeout_ms: float) -> None:
        if match := re.fullmatch(r"Type (.+) into the (.+?) field", instruction):
            value, label = match.groups()
            await self.page.get_by_label(label, exact=True).fill(value, timeout=timeout_ms)
        elif match := re.fullmatch(r"Click the (.+?) button", instruction):
            await self.page.get_by_role("button", name=match.group(1), exact=True).click(
                timeout=timeout_ms
            )
        else:
            raise AssertionError(f"cannot ground {instruction!r}")


def _iterations(trace: list[str]) -> Iterator[list[str]]:
    start = [i for i, step in enumerate(trace) if step == "open_email"] + [len(trace)]
    for a, b in itertools.pairwise(start):
        yield trace[a:b]


@pytest.mark.browser
async def test_workflow_runs_against_the_site(
    workflow: dict[str, Any], page: Page, demo: DemoServer, client: httpx.AsyncClient
) -> None:
    runner = ReferenceRunner(page, Graph(workflow), {"base_url": demo.base_url})
    await runner.run()

    assert runner.variables["emails"] == ["t1", "t2", "t3", "t4", "t5"]
    branches = [
        [s for s in it if "=" in s or s.endswith("_record")] for it in _iterations(runner.trace)
    ]
    assert branches == [
        ["is_investor_decision=yes", "in_crm_decision=yes", "update_investor_record"],
        ["is_investor_decision=no"],
        ["is_investor_decision=yes", "in_crm_decision=no", "add_investor_record"],
        ["is_investor_decision=no"],
        ["is_investor_decision=yes", "in_crm_decision=no", "add_investor_record"],
    ]
    assert runner.trace[-1] == "review_crm"
    assert page.url.endswith("/crm/")

    body = (await client.get("/demo/state")).json()
    assert body["summary"] == {"processed": 3, "added": 2, "updated": 1}
    assert {e["id"]: e["processed"] for e in body["emails"]} == {
        "t1": True, "t2": False, "t3": True, "t4": False, "t5": True,
    }  # fmt: skip
    crm = {r["email"]: r for r in body["crm"]}
    assert len(crm) == 5
    assert crm["sarah.chen@horizonvc.example"]["investmentFocus"] == "Seed-stage B2B SaaS"
    assert crm["sarah.chen@horizonvc.example"]["id"] == "rec-1"
    assert crm["marcus@northwind.example"] == {
        "id": "rec-4",
        "name": "Marcus Adeyemi",
        "company": "Northwind Capital",
        "email": "marcus@northwind.example",
        "phone": "+44 20 7946 0321",
        "investmentFocus": "Climate tech, Series A",
        "notes": "Introduced by Dana; interested in the Series A, asks for the data room.",
    }
    assert crm["priya@latticepartners.example"]["investmentFocus"] == "Developer tools, pre-seed"
