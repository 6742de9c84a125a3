"""Ordering: the source graph's nodes placed in containers and ordered into sequences.

The hierarchy comes from `children` / `parentId`; the order from the edges, scope by scope;
decisions split into branches that re-join where they converge. A node listed by two
containers (two branches converging on it) runs once after them when it ends every branch,
else each container gets its own copy. The rules are in docs/architecture.md, "Transform".
"""

from __future__ import annotations

import dataclasses
import heapq
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aef.errors import ValidationFailed
from aef.sop_formats import SourceEdge, SourceNode
from aef.sop_formats.graph import NO, YES, Branch, join

MAX_PLAN_DEPTH = 48
_MAX_LISTED_PROBLEMS = 10

_PLAIN_CONDITIONS = frozenset({"", "next", "start", "then", "continue", "default"})


@dataclass(frozen=True)
class _ScopedEdge:
    target: str
    branch: Branch | None
    condition: str | None


@dataclass
class Item:
    """A node placed in a scope's sequence; decisions carry their branches."""

    id: str
    yes: list[Item] | None = None
    no: list[Item] | None = None


class Ordering:
    """Places the nodes (`place`), then orders any scope into `Item`s (`plan_scope`)."""

    def __init__(
        self,
        nodes: dict[str, SourceNode],
        edges: list[SourceEdge],
        start_targets: list[str],
        warnings: list[str],
    ) -> None:
        self.nodes = nodes
        self.edges = edges
        self.start_targets = start_targets
        self.warnings = warnings
        self.parent: dict[str, str | None] = {}
        self.children: dict[str | None, list[str]] = {}
        self.scope_edges: dict[str | None, dict[str, list[_ScopedEdge]]] = {}
        self.entries: dict[str | None, list[str]] = {}
        self.continue_conditions: dict[str, list[str]] = {}
        self.exit_conditions: dict[str, list[str]] = {}
        self.copies: dict[str, str] = {}  # copy of a shared node -> the node
        self.shared: dict[str, tuple[list[str], str | None]] = {}  # -> (owners, common scope)
        self.hoisted: set[str] = set()  # shared nodes run once, after their branches
        self.place()

    def place(self) -> None:
        """Hierarchy, then edges per scope, then shared nodes where their branches converge."""
        self._build_hierarchy()
        self._lift_edges()
        self._converge_shared()

    def _build_hierarchy(self) -> None:
        problems: list[str] = []
        ids: list[str] = []
        owners: dict[str, list[str]] = {}
        for node in self.nodes.values():
            for child in dict.fromkeys(node.declared_children):
                owners.setdefault(child, []).append(node.id)
        for node in self.nodes.values():
            listed = owners.get(node.id, [])
            declared = node.declared_parent
            if listed and declared and declared not in listed:
                problems.append(
                    f"node {node.id} has parentId {declared} but is listed as a child of "
                    f"{listed_ids(listed)}"
                )
                ids.append(node.id)
            if declared in listed:  # the declared parent is the primary owner
                listed.remove(declared)
                listed.insert(0, declared)
            parent = listed[0] if listed else declared
            if node.id in listed or parent == node.id:
                problems.append(f"node {node.id} is its own parent")
                ids.append(node.id)
            self.parent[node.id] = parent
        raise_problems(problems, ids)
        self._check_nesting()
        for node_id, listed in owners.items():
            if len(listed) > 1:
                self._share(node_id, listed)
        self._check_nesting()
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

    def _check_nesting(self) -> None:
        """No cycles of parents, depth bounded."""
        for node_id in self.nodes:
            depth, cur, chain = 0, node_id, [node_id]
            while (cur := self.parent[cur]) is not None:  # type: ignore[assignment]
                depth += 1
                if cur == node_id:
                    raise ValidationFailed(
                        f"nodes {listed_ids(chain)} are each other's parents", ids=chain
                    )
                if depth > MAX_PLAN_DEPTH:
                    raise ValidationFailed(
                        f"node {node_id} is nested more than {MAX_PLAN_DEPTH} levels deep",
                        ids=[node_id],
                    )
                chain.append(cur)

    # -- nodes shared by two containers -------------------------------------------------

    def _share(self, node_id: str, owners: list[str]) -> None:
        """A node listed by several containers (the branches of a decision converging on it).
        It runs once, after whichever branch ran, when it ends every branch; else each
        container keeps its own copy."""
        inside = {o for o in owners if node_id in self._ancestors(o)}
        if inside:
            raise ValidationFailed(
                f"node {node_id} is listed as a child of its own descendant {listed_ids(inside)}",
                ids=[node_id, *sorted(inside)],
            )
        chains = [self._ancestors(o) for o in owners]
        lca = next((a for a in chains[0] if all(a in c for c in chains[1:])), None)
        if lca in owners:
            raise ValidationFailed(
                f"node {node_id} is listed by {listed_ids(owners)}, and {lca} contains the others",
                ids=[node_id, *owners],
            )
        self.shared[node_id] = (owners, lca)
        if self._ends_each(node_id, owners):
            self.parent[node_id] = lca
            self.hoisted.add(node_id)
            return
        if any(self.parent[n] == node_id for n in self.nodes):
            raise ValidationFailed(
                f"node {node_id} is listed by {listed_ids(owners)} between different steps in "
                "each, and it contains steps of its own: it cannot run in each of them",
                ids=[node_id, *owners],
            )
        names = [node_id]
        for owner in owners[1:]:
            names.append(self._copy(node_id, owner))
        self.warnings.append(
            f"step {node_id}: listed by {listed_ids(owners)}, between different steps in each; "
            f"each runs its own copy ({listed_ids(names)})"
        )

    def _ends_each(self, node_id: str, owners: list[str]) -> bool:
        """Nothing inside any of the containers follows the node."""
        after = {e.target for e in self.edges if e.source == node_id}
        for owner in owners:
            for target in after:
                if target != node_id and owner in self._ancestors(target)[1:]:
                    return False
        return True

    def _copy(self, node_id: str, owner: str) -> str:
        """Give `owner` its own copy of the shared node; edges within `owner` move to it."""
        copy_id = f"{node_id}@{owner}"
        while copy_id in self.nodes:
            copy_id += "'"
        self.nodes[copy_id] = dataclasses.replace(
            self.nodes[node_id], id=copy_id, declared_parent=owner, declared_children=[]
        )
        container = self.nodes[owner]
        container.declared_children = [
            copy_id if c == node_id else c for c in container.declared_children
        ]
        self.parent[copy_id] = owner
        self.copies[copy_id] = node_id

        def within(other: str) -> bool:
            return other != node_id and owner in self._ancestors(other)[1:]

        self.edges = [
            SourceEdge(copy_id, e.target, e.branch, e.condition)
            if e.source == node_id and within(e.target)
            else SourceEdge(e.source, copy_id, e.branch, e.condition)
            if e.target == node_id and within(e.source)
            else e
            for e in self.edges
        ]
        return copy_id

    def _converge_shared(self) -> None:
        """Check that the containers sharing a node are alternatives (different branches of a
        decision, neither leading to the other), then put each hoisted node where its branches
        converge: every branch leads to it and what followed a branch follows it."""
        problems: list[str] = []
        ids: list[str] = []
        for node_id, (owners, scope) in self.shared.items():
            edges = self.scope_edges.setdefault(scope, {})
            branches = list(dict.fromkeys(self._member_of(scope, o) for o in owners))
            reached = {b: _reachable(edges, b, avoid=node_id) for b in branches}
            deciders = [m for m in self.children.get(scope, [])
                        if self.nodes[m].kind == "decision"
                        and set(branches) <= _reachable(edges, m, avoid=node_id)]
            if not deciders or any(b in reached[a] for a in branches for b in branches if a != b):
                problems.append(
                    f"node {node_id} is listed as a child of both {owners[0]} and "
                    f"{listed_ids(owners[1:])}, which are not alternative branches of one decision"
                )
                ids += [node_id, *owners]
                continue
            if node_id not in self.hoisted:
                continue
            after = edges.setdefault(node_id, [])
            for branch in branches:
                for se in edges.get(branch, []):
                    if se.target != node_id and all(x.target != se.target for x in after):
                        after.append(_ScopedEdge(se.target, None, se.condition))
                edges[branch] = [_ScopedEdge(node_id, None, None)]
        raise_problems(problems, ids)

    def _member_of(self, scope: str | None, node_id: str) -> str:
        """The ancestor of `node_id` (or itself) that is a direct member of `scope`."""
        chain = self._ancestors(node_id)
        for i, ancestor in enumerate(chain):
            if self.parent[ancestor] == scope:
                return chain[i]
        return chain[-1]

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
        queue = [n for n in self.nodes
                 if self.parent[n] is None and n in incoming and n not in self.hoisted]
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
                if self.parent[t] is None and t not in queued and t not in self.hoisted:
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
        raise_problems(problems, ids, prefix="")

    def _mark_entries(self, path: Iterable[str]) -> None:
        for node_id in path:
            entries = self.entries.setdefault(self.parent[node_id], [])
            if node_id not in entries:
                entries.append(node_id)

    def _add_continue(self, loop_id: str, e: SourceEdge) -> None:
        if _meaningful(e.condition):
            self.continue_conditions.setdefault(loop_id, []).append(e.condition or "")

    # -- ordering -----------------------------------------------------------------------

    def plan_scope(self, scope: str | None, depth: int) -> list[Item]:
        """Order one scope's members into a sequence with decision branches."""
        check_depth(depth, scope)
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
        sequence: list[Item] = []
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


class _SequenceBuilder:
    """Walks one scope's acyclic graph into a sequence; decisions split and re-join."""

    def __init__(
        self,
        t: Ordering,
        dag: dict[str, list[_ScopedEdge]],
        topo_index: dict[str, int],
    ) -> None:
        self.t = t
        self.dag = dag
        self.topo_index = topo_index
        self.visited: set[str] = set()

    def run(self, start: str | None, stop: frozenset[str], depth: int) -> list[Item]:
        check_depth(depth, start)
        out: list[Item] = []
        cur = start
        while cur is not None and cur not in stop and cur not in self.visited:
            self.visited.add(cur)
            outs = self.dag[cur]
            if self.t.nodes[cur].kind == "decision":
                yes, no, cont = self._branches(cur, outs)
                merge = cont if cont is not None else self._merge(yes, no)
                inner = stop | {merge} if merge is not None else stop
                out.append(
                    Item(
                        cur,
                        yes=self.run(yes, inner, depth + 1) if yes else [],
                        no=self.run(no, inner, depth + 1) if no else [],
                    )
                )
                cur = merge
                continue
            out.append(Item(cur))
            if len(outs) > 1:
                self.t.warnings.append(
                    f"step {cur}: several next steps ({listed_ids([o.target for o in outs])}); "
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
                    f"decision {decision} has {len(targets)} '{name}' branches: "
                    f"{listed_ids(targets)}",
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
                    f"{listed_ids(other)} is yes and which is no",
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



def check_depth(depth: int, where: str | None) -> None:
    if depth > MAX_PLAN_DEPTH:
        raise ValidationFailed(
            f"steps are nested more than {MAX_PLAN_DEPTH} levels deep (at {where})",
            ids=[where] if where else [],
        )


def raise_problems(problems: list[str], ids: list[str], prefix: str = "") -> None:
    if problems:
        raise ValidationFailed(
            prefix + join(problems), problems=problems[:50], ids=list(dict.fromkeys(ids))
        )


def listed_ids(ids: Iterable[str]) -> str:
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


def _reachable(edges: dict[str, list[_ScopedEdge]], start: str, *, avoid: str) -> set[str]:
    """The members reachable from `start` along `edges`, not passing through `avoid`."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        for se in edges.get(stack.pop(), []):
            if se.target not in seen and se.target != avoid:
                seen.add(se.target)
                stack.append(se.target)
    return seen
