"""A profile as one self-contained HTML page: the model's graph (inputs,
regions, outputs) drawn as inline SVG, each region colored by its share of
the time, and a table of the regions; inline CSS and a few lines of
JavaScript, nothing fetched from the network.

The graph is laid out here, in layers: each region one layer below the
lowest node it reads from, and within a layer ordered by the mean position
of those nodes (the barycenter heuristic of layered graph drawing).
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

from nnforge.errors import SaveError
from nnforge.profiling.report import OUTSIDE_LABEL, Profile, RegionTime

NODE_WIDTH, NODE_HEIGHT = 230, 52
GAP_X, GAP_Y, MARGIN = 24, 46, 16
# Fill colors from no time (light grey) to the region taking the most (red).
COLD, HOT = (0xF4, 0xF4, 0xF4), (0xD7, 0x30, 0x1F)
LABEL_CHARACTERS = 30

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
.summary { color: #555; margin: 0 0 1em; }
.graph { overflow: auto; border: 1px solid #ddd; max-height: 80vh; }
svg text { font: 12px system-ui, sans-serif; pointer-events: none; }
.node rect { stroke: #888; stroke-width: 1; }
.node.io rect { fill: #e8eef7; stroke: #7a93b8; }
.node.selected rect { stroke: #000; stroke-width: 3; }
.edge { fill: none; stroke: #999; stroke-width: 1.2; }
table { border-collapse: collapse; margin-top: 1.2em; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.row { cursor: pointer; }
tr.row:hover { background: #f6f6f6; }
.bar { height: 10px; background: #d7301f; }
code { font-size: 12px; color: #444; }
"""

# Counts the region nodes the browser drew with a size (what the test
# checks), and highlights a region's node when its table row is clicked.
_SCRIPT = """
const nodes = document.querySelectorAll('g.region');
const drawn = [...nodes].filter(node => {
  const box = node.getBoundingClientRect();
  return box.width > 0 && box.height > 0;
});
document.getElementById('rendered').textContent = drawn.length + ' of ' + nodes.length + ' regions drawn';
for (const row of document.querySelectorAll('tr.row')) {
  row.addEventListener('click', () => {
    for (const node of nodes) node.classList.remove('selected');
    const node = document.getElementById('node-' + row.dataset.region);
    node.classList.add('selected');
    node.scrollIntoView({block: 'center', inline: 'center'});
  });
}
"""


@dataclass
class _Node:
    name: str  # "input:0", "region:3", "output:0"
    lines: tuple[str, str]
    tooltip: str
    time: RegionTime | None
    predecessors: tuple[str, ...]
    layer: int = 0
    x: float = 0.0
    y: float = 0.0


def write_page(profile: Profile, path: str | os.PathLike) -> Path:
    """Writes `profile` as an HTML page at `path`; returns the path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(profile), encoding="utf-8")
    except OSError as error:
        raise SaveError(f"cannot write the profile page {path}: {error.strerror or error}") from None
    return path


def render(profile: Profile) -> str:
    """The HTML page of `profile`."""
    nodes = _nodes(profile)
    width, height = _lay_out(nodes)
    hottest = max((time.share for time in profile.regions), default=0.0)
    title = f"nnforge profile: {profile.model}"
    summary = (f"{profile.seconds * 1e3:.3f} ms per call, mean of {profile.runs} runs on {profile.machine}; "
               f"{len(profile.regions)} regions, {profile.outside_share:.1%} of the time outside them. "
               "Color: share of the time, relative to the largest region.")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="summary">{html.escape(summary)} <span id="rendered"></span></p>',
        '<div class="graph">',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#999"/></marker></defs>',
        *_edges(nodes),
        *(_node_svg(node, hottest) for node in nodes.values()),
        "</svg></div>",
        _table(profile),
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ])


def _nodes(profile: Profile) -> dict[str, _Node]:
    """The graph's nodes, inputs first, then regions in program order, then outputs."""
    layout = profile.layout
    nodes: dict[str, _Node] = {}
    for index, name in enumerate(layout.input_names):
        nodes[f"input:{index}"] = _Node(f"input:{index}", ("input", name), f"input {index}: {name}", None, ())
    times = {time.region.id: time for time in profile.regions}
    for region in layout.regions:
        time = times[region.id]
        tooltip = "\n".join([
            f"#{region.id} {region.label}", f"{time.share:.1%} of the time, {_duration(time.seconds)} per call",
            f"ops: {', '.join(region.ops) or region.kind}", f"result: {region.result}",
            *(f"from {source.describe()}" for source in region.sources),
        ])
        label = f"#{region.id} {region.label}"
        if len(label) > LABEL_CHARACTERS:
            label = label[:LABEL_CHARACTERS - 1] + "\u2026"
        predecessors = tuple(node for node in region.inputs if node in nodes)
        nodes[region.node] = _Node(region.node, (label, f"{time.share:.1%} \u00b7 {_duration(time.seconds)}"),
                                   tooltip, time, predecessors)
    for index, sources in enumerate(layout.outputs):
        name = f"output:{index}"
        nodes[name] = _Node(name, ("output", str(index)), f"output {index}", None,
                            tuple(node for node in sources if node in nodes))
    return nodes


def _duration(seconds: float) -> str:
    """0.0123 -> "12.300 ms"; 4.2e-6 -> "4.2 µs"."""
    return f"{seconds * 1e3:.3f} ms" if seconds >= 1e-4 else f"{seconds * 1e6:.1f} \u00b5s"


def _lay_out(nodes: dict[str, _Node]) -> tuple[float, float]:
    """Places the nodes in layers, top to bottom; returns the drawing's size."""
    for node in nodes.values():
        if node.name.startswith("region:"):
            node.layer = 1 + max((nodes[p].layer for p in node.predecessors), default=0)
    # A region reading no other node (a fill) sits just above its first
    # reader, not in the top layer with a long edge down to it.
    readers: dict[str, list[_Node]] = {}
    for node in nodes.values():
        for name in node.predecessors:
            readers.setdefault(name, []).append(node)
    for node in reversed(list(nodes.values())):
        if node.name.startswith("region:") and not node.predecessors and node.name in readers:
            node.layer = max(1, min(reader.layer for reader in readers[node.name]) - 1)
    last = 1 + max((node.layer for node in nodes.values()), default=0)
    for node in nodes.values():
        if node.name.startswith("output:"):
            node.layer = last
    layers: dict[int, list[_Node]] = {}
    for node in nodes.values():
        layers.setdefault(node.layer, []).append(node)
    order: dict[str, float] = {}
    for layer in sorted(layers):
        members = layers[layer]
        # Nodes without placed predecessors keep their program order.
        keys = {node.name: _barycenter(node, order, index) for index, node in enumerate(members)}
        members.sort(key=lambda node: keys[node.name])
        for position, node in enumerate(members):
            order[node.name] = position
    widest = max(len(members) for members in layers.values())
    width = 2 * MARGIN + widest * NODE_WIDTH + (widest - 1) * GAP_X
    for layer, members in layers.items():
        row_width = len(members) * NODE_WIDTH + (len(members) - 1) * GAP_X
        start = (width - row_width) / 2
        for position, node in enumerate(members):
            node.x = start + position * (NODE_WIDTH + GAP_X)
            node.y = MARGIN + layer * (NODE_HEIGHT + GAP_Y)
    height = 2 * MARGIN + (last + 1) * NODE_HEIGHT + last * GAP_Y
    return width, height


def _barycenter(node: _Node, order: dict[str, float], fallback: int) -> float:
    placed = [order[p] for p in node.predecessors if p in order]
    return sum(placed) / len(placed) if placed else float(fallback)


def _edges(nodes: dict[str, _Node]) -> list[str]:
    paths = []
    for node in nodes.values():
        for name in node.predecessors:
            source = nodes[name]
            x1, y1 = source.x + NODE_WIDTH / 2, source.y + NODE_HEIGHT
            x2, y2 = node.x + NODE_WIDTH / 2, node.y
            middle = (y1 + y2) / 2
            paths.append(f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{x1:.1f},{middle:.1f} '
                         f'{x2:.1f},{middle:.1f} {x2:.1f},{y2:.1f}" marker-end="url(#arrow)"/>')
    return paths


def _color(share: float, hottest: float) -> str:
    weight = share / hottest if hottest > 0 else 0.0
    red, green, blue = (round(cold + (hot - cold) * weight) for cold, hot in zip(COLD, HOT))
    return f"#{red:02x}{green:02x}{blue:02x}"


def _node_svg(node: _Node, hottest: float) -> str:
    if node.time is None:
        classes, fill, ident = "node io", "", ""
    else:
        classes = "node region"
        fill = f' fill="{_color(node.time.share, hottest)}"'
        ident = f' id="node-{node.time.region.id}" data-share="{node.time.share:.6f}"'
    text_color = "#fff" if node.time is not None and node.time.share > 0.6 * hottest > 0 else "#222"
    first, second = (html.escape(line) for line in node.lines)
    return (
        f'<g class="{classes}"{ident}><title>{html.escape(node.tooltip)}</title>'
        f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="6"{fill}/>'
        f'<text x="{node.x + 10:.1f}" y="{node.y + 21:.1f}" fill="{text_color}">{first}</text>'
        f'<text x="{node.x + 10:.1f}" y="{node.y + 39:.1f}" fill="{text_color}">{second}</text></g>'
    )


def _table(profile: Profile) -> str:
    rows = ["<table><thead><tr><th>region</th><th>share</th><th></th><th>ms/call</th>"
            "<th>calls/call</th><th>ops</th><th>source</th></tr></thead><tbody>"]
    for time in profile.regions:
        region = time.region
        sources = "<br>".join(
            f"{html.escape(source.where)} <code>{html.escape(source.code)}</code>" for source in region.sources
        )
        rows.append(
            f'<tr class="row" data-region="{region.id}"><td>#{region.id} {html.escape(region.label)}</td>'
            f'<td class="number">{time.share:.1%}</td>'
            f'<td><div class="bar" style="width:{100 * time.share:.1f}px"></div></td>'
            f'<td class="number">{time.seconds * 1e3:.4f}</td><td class="number">{time.calls:g}</td>'
            f"<td>{html.escape(', '.join(region.ops) or region.kind)}</td><td>{sources}</td></tr>"
        )
    rows.append(
        f'<tr><td>{html.escape(OUTSIDE_LABEL)}</td><td class="number">{profile.outside_share:.1%}</td>'
        f'<td><div class="bar" style="width:{100 * profile.outside_share:.1f}px"></div></td>'
        f'<td class="number">{profile.outside * 1e3:.4f}</td><td></td><td></td><td></td></tr>'
    )
    rows.append("</tbody></table>")
    return "\n".join(rows)
