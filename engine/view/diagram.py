"""A machine's state diagram as inline SVG, with the path a run took marked: no script, no
network, readable in any browser months later.

Drawn from the pinned canonical definition (its `states` and `transitions`: the graph
`engine.definition.statechart` gives to `transitions`), so a report needs neither the
machine's file nor its actions. The layout is layered, left to right: a state's column is
its distance from the initial state; an edge to the next column is a straight arrow, any
other (back, skipping, within a column) a curve under the columns, and a self-loop an arc
above its state. Every text is escaped here: the SVG is inserted into pages as it is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

FONT = 13  # px; the text-width estimate below assumes a sans-serif face at this size
CHAR_W = 7.4
NODE_H = 46
COLUMN_GAP = 110  # room for an edge's label between two columns
ROW_GAP = 34
MARGIN = 24
START_W = 34  # the start dot and its arrow, left of the first column


@dataclass
class _Node:
    name: str
    note: str
    final: bool
    column: int
    first: bool = False  # top of its column
    last: bool = False  # bottom of its column
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0

    @property
    def right(self) -> float:
        return self.x + self.w


def render(definition: dict[str, Any], *, taken: Sequence[tuple[str, str, str]] = (),
           visited: Sequence[str] = (), current: str | None = None, escalated: bool = False) -> str:
    """The SVG element. `taken`: transitions (source, dest, trigger) the run took;
    `visited`: states it entered; `current`: where it is (red when `escalated`)."""
    states: dict[str, dict[str, Any]] = definition.get("states", {})
    edges = _edges(definition, states)
    nodes = _layout(states, definition.get("initial", ""), edges)
    used = {(s, d, t) for s, d, t in taken}
    parts: list[str] = []
    top = min((n.y for n in nodes.values()), default=0.0)
    bottom = max((n.y + NODE_H for n in nodes.values()), default=0.0)
    above = below = loops = 0
    for (source, dest), triggers in edges.items():
        if source not in nodes or dest not in nodes:
            continue
        hot = any((source, dest, t) in used for t in triggers)
        label = " | ".join(triggers)
        a, b = nodes[source], nodes[dest]
        if source == dest:
            loops += 1
            path, lx, ly = _loop(a)
        elif b.column == a.column + 1:
            path, lx, ly = _straight(a, b)
        elif a.first and b.first and not (a.last and b.last):
            above += 1  # both on top of their columns: over the top crosses no state
            path, lx, ly = _curve(a, b, top - 18 - 22 * above, from_top=True)
        else:
            below += 1
            path, lx, ly = _curve(a, b, bottom + 18 + 22 * below, from_top=False)
        cls = "edge taken" if hot else "edge"
        parts.append(f'<path class="{cls}" d="{path}" marker-end="url(#{"arrow-taken" if hot else "arrow"})"/>')
        parts.append(_label(lx, ly, label, hot))
    initial = nodes.get(definition.get("initial", ""))
    if initial is not None:
        cy = initial.y + NODE_H / 2
        parts.append(f'<circle class="start" cx="{MARGIN + 6}" cy="{cy}" r="6"/>')
        parts.append(f'<path class="edge taken" d="M{MARGIN + 12},{cy} L{initial.x - 2},{cy}" '
                     'marker-end="url(#arrow-taken)"/>')
    for node in nodes.values():
        parts.append(_box(node, node.name in visited, node.name == current, escalated and node.name == current))
    width = max((n.right for n in nodes.values()), default=0.0) + MARGIN
    shift = 22 * above + (26 if above else 0) + (24 if loops else 0)  # room above the states for curves and loops
    height = bottom + 22 * below + (26 if below else 0) + MARGIN + shift
    title = escape(f"{definition.get('name', '')} v{definition.get('version', '')}")
    return (f'<svg class="diagram" xmlns="http://www.w3.org/2000/svg" role="img" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 {-shift:.0f} {width:.0f} {height:.0f}" font-size="{FONT}">'
            f"<title>{title}: states and transitions, the path taken in colour</title>{_DEFS}"
            + "".join(parts) + "</svg>")


_MARKER = ('<marker id="{}" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" '
           'markerWidth="11" markerHeight="11" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{}"/></marker>')
_DEFS = f"<defs>{_MARKER.format('arrow', '#8a94a6')}{_MARKER.format('arrow-taken', '#1565c0')}</defs>"


def _edges(definition: dict[str, Any], states: dict[str, dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """(source, dest) -> its triggers, in definition order; a `*` source means every non-final state."""
    edges: dict[tuple[str, str], list[str]] = {}
    for t in definition.get("transitions", []):
        sources = t.get("source", [])
        if sources == ["*"] or sources == "*":
            sources = [name for name, s in states.items() if not s.get("final")]
        for source in [sources] if isinstance(sources, str) else sources:
            triggers = edges.setdefault((source, t["dest"]), [])
            guard = "".join(f" if {c.partition(':')[2]}" for c in t.get("conditions", []))
            guard += "".join(f" unless {c.partition(':')[2]}" for c in t.get("unless", []))
            if t["trigger"] + guard not in triggers:
                triggers.append(t["trigger"] + guard)
    return edges


def _layout(states: dict[str, dict[str, Any]], initial: str,
            edges: dict[tuple[str, str], list[str]]) -> dict[str, _Node]:
    """Columns by breadth-first distance from the initial state (unreachable ones last),
    rows in definition order, every column centred on the tallest."""
    column = {initial: 0} if initial in states else {}
    queue = deque(column)
    while queue:
        here = queue.popleft()
        for source, dest in edges:
            if source == here and dest not in column and dest in states:
                column[dest] = column[here] + 1
                queue.append(dest)
    last = max(column.values(), default=-1) + 1
    nodes = {name: _Node(name, _note(spec), bool(spec.get("final")), column.get(name, last))
             for name, spec in states.items()}
    columns: dict[int, list[_Node]] = {}
    for node in nodes.values():
        node.w = 28 + max(len(node.name) * (CHAR_W + 0.6), len(node.note) * (CHAR_W - 1.2))
        columns.setdefault(node.column, []).append(node)
    curved = {end for (source, dest) in edges if source != dest
               and column.get(dest, last) != column.get(source, last) + 1 for end in (source, dest)}
    for members in columns.values():  # states with curved edges to the edges of their column
        members.sort(key=lambda n: n.name in curved)
        members[0].first, members[-1].last = True, True
    tallest = max((len(c) for c in columns.values()), default=0) * (NODE_H + ROW_GAP) - ROW_GAP
    x: float = MARGIN + START_W
    for index in sorted(columns):
        members = columns[index]
        height = len(members) * (NODE_H + ROW_GAP) - ROW_GAP
        y = MARGIN + (tallest - height) / 2
        for node in members:
            node.x, node.y = x, y
            y += NODE_H + ROW_GAP
        labels = [len(" | ".join(t)) * (CHAR_W - 0.6) for (source, dest), t in edges.items()
                  if source in nodes and nodes[source].column == index and column.get(dest, last) == index + 1]
        x += max(n.w for n in members) + max(COLUMN_GAP, max(labels, default=0) + 44)
    return nodes


def _note(spec: dict[str, Any]) -> str:
    """The state's kind in a few words, under its name."""
    if spec.get("final"):
        return f"final: {spec['outcome']}" if spec.get("outcome") else "final"
    if spec.get("action"):
        return f"task: {str(spec['action']).partition(':')[2]}"
    if spec.get("spawn"):
        return f"spawns {Path(str(spec['spawn'].get('machine', ''))).stem}"
    who = f" {', '.join(spec['approvers'])}" if spec.get("approvers") else ""
    return f"waits for{who}" if who else "waits"


def _straight(a: _Node, b: _Node) -> tuple[str, float, float]:
    y1, y2 = a.y + NODE_H / 2, b.y + NODE_H / 2
    x1, x2 = a.right, b.x - 2
    return f"M{x1:.1f},{y1:.1f} L{x2:.1f},{y2:.1f}", (x1 + x2) / 2, (y1 + y2) / 2 - 6


def _curve(a: _Node, b: _Node, depth: float, *, from_top: bool) -> tuple[str, float, float]:
    """A cubic curve from a's bottom to b's (or top to top) through `depth`; the label at its middle."""
    x1, x2 = a.x + a.w / 2 + 10, b.x + b.w / 2 - 10
    y1, y2 = (a.y, b.y - 2) if from_top else (a.y + NODE_H, b.y + NODE_H + 2)
    path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{depth:.1f} {x2:.1f},{depth:.1f} {x2:.1f},{y2:.1f}"
    middle = (y1 + y2) / 8 + depth * 0.75  # a cubic Bézier's point at t = 1/2
    return path, (x1 + x2) / 2, middle + 4


def _loop(a: _Node) -> tuple[str, float, float]:
    x1, x2, y = a.x + a.w / 2 - 14, a.x + a.w / 2 + 14, a.y
    return f"M{x1:.1f},{y:.1f} C{x1 - 18:.1f},{y - 38:.1f} {x2 + 18:.1f},{y - 38:.1f} {x2:.1f},{y - 1:.1f}", \
        a.x + a.w / 2, y - 32


def _label(x: float, y: float, text: str, hot: bool) -> str:
    width = len(text) * (CHAR_W - 0.6) + 8
    return (f'<rect class="label-bg" x="{x - width / 2:.1f}" y="{y - 12:.1f}" width="{width:.1f}" height="16" rx="3"/>'
            f'<text class="label{" taken" if hot else ""}" x="{x:.1f}" y="{y:.1f}" text-anchor="middle">'
            f"{escape(text)}</text>")


def _box(node: _Node, visited: bool, current: bool, escalated: bool) -> str:
    cls = " ".join(["state", *(["visited"] if visited else []), *(["current"] if current else []),
                    *(["escalated"] if escalated else []), *(["final"] if node.final else [])])
    cx = node.x + node.w / 2
    inner = (f'<rect x="{node.x + 3:.1f}" y="{node.y + 3:.1f}" width="{node.w - 6:.1f}" height="{NODE_H - 6}" '
             'rx="7" class="inner"/>') if node.final else ""
    return (f'<g class="{cls}" data-state="{escape(node.name)}">'
            f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{node.w:.1f}" height="{NODE_H}" rx="9"/>{inner}'
            f'<text class="name" x="{cx:.1f}" y="{node.y + 19:.1f}" text-anchor="middle">{escape(node.name)}</text>'
            f'<text class="note" x="{cx:.1f}" y="{node.y + 35:.1f}" text-anchor="middle">{escape(node.note)}</text>'
            "</g>")
