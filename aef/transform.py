"""SOP / JSON workflow -> AEF document. Pure: no I/O; the clock is read only if `now` is omitted.

The output is the input document, copied untouched, plus an `aef` section holding the
execution config and the *plan*, a tree of `PlanStep`s the runner executes in order. The
source formats are read by `aef.sop_formats`; this module orders the graph they produce into
the plan and plans its checkpoints. The rules (hierarchy, order from edges, decisions,
loops, checkpoints, credentials, the duration estimate) are in docs/architecture.md,
"Transform".
"""

import heapq
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aef import __version__
from aef.errors import ValidationFailed
from aef.models import (
    Action,
    AefConfig,
    AefConfigPatch,
    AefSection,
    CheckpointConfig,
    DecisionSpec,
    LoopSpec,
    PlanStep,
    SecretConfig,
    StepCheckpoint,
    StepKind,
    WorkflowCredential,
)
from aef.placeholders import PLACEHOLDER
from aef.plan import walk
from aef.sop_formats import SourceEdge, SourceNode, read_source
from aef.sop_formats.graph import NO, YES, Branch, SourceFormat, is_rule, join, validate_model

AEF_FORMAT_VERSION = "1.0"
TRANSFORMED_BY = f"aef.transform/{__version__}"

# Bounds that keep every input cheap to process and the output storable (Postgres jsonb).
MAX_JSON_DEPTH = 64
MAX_JSON_VALUES = 250_000
MAX_PLAN_DEPTH = 48
MAX_ESTIMATE_SECONDS = 7 * 24 * 3600
MAX_WARNINGS = 100
_MAX_LISTED_PROBLEMS = 10


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


_PLAIN_CONDITIONS = frozenset({"", "next", "start", "then", "continue", "default"})


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
        self.nodes: dict[str, SourceNode] = {}
        self.edges: list[SourceEdge] = []
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
        graph = read_source(document)
        self.warnings.extend(graph.warnings)
        self.nodes, self.edges, self.duplicates = graph.nodes, graph.edges, graph.duplicates
        self.runtime_vars = graph.runtime_vars
        self._validate_graph()
        self._build_hierarchy()
        self._lift_edges()
        config = _effective_config(patch, graph.defaults, self.warnings)
        policy = _CheckpointPolicy(config, self._custom_checkpoints(config))
        plan = [self._plan_step(item, policy, 0) for item in self._plan_scope(None, 0)]
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
            estimated_step_count=sum(1 for _ in walk(plan)),
            estimated_duration_seconds=min(
                MAX_ESTIMATE_SECONDS, math.ceil(sum(_duration(s) for s in plan))
            ),
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
                f"duplicate node ids: {_names(dups)}", problems=["duplicate id"], ids=dups
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

    def _add_continue(self, loop_id: str, e: SourceEdge) -> None:
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
                exit_condition = next((c for c in candidates if is_rule(c)), None)
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

    def _step_credentials(self, node: SourceNode) -> list[str]:
        names = list(node.credentials)
        text = json.dumps(node.raw, ensure_ascii=False)
        for match in PLACEHOLDER.finditer(text):
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
        for step in walk(plan):
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



def _check_depth(depth: int, where: str | None) -> None:
    if depth > MAX_PLAN_DEPTH:
        raise ValidationFailed(
            f"steps are nested more than {MAX_PLAN_DEPTH} levels deep (at {where})",
            ids=[where] if where else [],
        )


def _raise_problems(problems: list[str], ids: list[str], prefix: str = "") -> None:
    if problems:
        raise ValidationFailed(
            prefix + join(problems), problems=problems[:50], ids=list(dict.fromkeys(ids))
        )


def _capped(warnings: list[str]) -> list[str]:
    if len(warnings) <= MAX_WARNINGS:
        return warnings
    kept = warnings[: MAX_WARNINGS - 1]
    return [*kept, f"... and {len(warnings) - len(kept)} more warnings"]


def _names(ids: Iterable[str]) -> str:
    ids = list(ids)
    shown = ", ".join(ids[:_MAX_LISTED_PROBLEMS])
    return shown + (f" (and {len(ids) - _MAX_LISTED_PROBLEMS} more)" if len(ids) > 10 else "")


def _meaningful(condition: str | None) -> bool:
    return condition is not None and condition.strip().lower() not in (
        _PLAIN_CONDITIONS | YES | NO
    )


def _position(node: SourceNode) -> tuple[Any, ...]:
    if node.id_path:
        parts = tuple(
            (0, int(p), "") if p.isdigit() else (1, 0, p)
            for p in re.findall(r"\d+|[^\d.]+", node.id_path)
        )
        return (0, parts, node.index)
    return (1, (), node.index)


def _instruction(node: SourceNode) -> str:
    head = node.intent or node.label
    return f"{head}\n\n{node.context}" if node.context else head


def _risk_reason(node: SourceNode) -> str | None:
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


def _negated(condition: str) -> str:
    condition = condition.strip()
    return f"not {condition}" if re.fullmatch(r"[\w.]+", condition) else f"not ({condition})"


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
