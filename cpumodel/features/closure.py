"""Implication closure of two-literal clauses: for every literal, the bit set of the literals it
implies (itself included). Used once, when the constraint program is built (tools/gen_features.py)."""

from __future__ import annotations


def implication_closure(succ: list[list[int]]) -> list[int]:
    """Bit set of literals reachable from each literal along ``succ`` (itself included)."""
    comp, comps = _components(succ)
    # Tarjan emits components in reverse topological order: successors first
    cmask = [0] * len(comps)
    for ci, members in enumerate(comps):
        m = 0
        for v in members:
            m |= 1 << v
        for v in members:
            for w in succ[v]:
                if comp[w] != ci:
                    m |= cmask[comp[w]]
        cmask[ci] = m
    return [cmask[comp[v]] for v in range(len(succ))]


def _components(succ: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Strongly connected components (Tarjan, iterative): component of each node, and the
    components' members, successors' components first."""
    n = len(succ)
    index = [-1] * n
    low = [0] * n
    on = [False] * n
    stack: list[int] = []
    comp = [-1] * n
    comps: list[list[int]] = []
    counter = 0
    for root in range(n):
        if index[root] >= 0:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on[v] = True
            recurse = False
            for j in range(i, len(succ[v])):
                w = succ[v][j]
                if index[w] < 0:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if on[w]:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                members = []
                while True:
                    w = stack.pop()
                    on[w] = False
                    comp[w] = len(comps)
                    members.append(w)
                    if w == v:
                        break
                comps.append(members)
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
    return comp, comps
