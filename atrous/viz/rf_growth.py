"""RF growth along the path to the output: theory, clipped RF and jump per step, branches apart."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from matplotlib.figure import Figure
from torch import nn

from .. import receptive_field as rfm
from .common import PathLike, _save
from .theme import series_style

__all__ = ["GrowthPath", "plot_rf_growth", "rf_path"]


@dataclass
class GrowthPath:
    """The rows from the input to the output along the trunk (see ``rf_path``).

    ``theory`` is the unclipped RF width per step (NaN after resampling: no theory), ``clipped`` the
    width of the pixels that really reach the central output (the image is finite), ``jump`` the theory's
    jump (NaN without theory). ``side`` lists the branches a merge joins that are not on the path, as
    ``(step of the path row they run beside, row)``: they are drawn as markers, never joined to the path.
    """

    rows: list[rfm.LayerRF]
    theory: list[float]
    clipped: list[int]
    jump: list[float]
    side: list[tuple[int, rfm.LayerRF]] = field(default_factory=list)


def _theory(row: rfm.LayerRF) -> float:
    return float(row.rf[1].size) if row.rf is not None else math.nan


def _clipped(row: rfm.LayerRF) -> int:
    return row.size_at(*row.centre_position)[1]


def _conv_depth(report: rfm.ReceptiveFieldReport) -> dict[int, int]:
    """Per row, the most convolutions on any chain from the input, not counting those on a 1x1 map
    (image pooling's conv) nor pooling and resampling rows."""
    depth: dict[int, int] = {}
    for row in report.layers:  # execution order: parents come first
        own = int("conv" in row.op.lower() and row.size != (1, 1))
        depth[row.index] = own + max((depth[p] for p in row.parents), default=0)
    return depth


def rf_path(report: rfm.ReceptiveFieldReport) -> GrowthPath:
    """Walk back from the output, at each merge following the parent behind the most spatial convolutions
    (the trunk: not a 1x1 shortcut, not image pooling, not the decoder's low-level skip; ties: the
    largest theoretical, then clipped RF); raises ``RuntimeError`` if the theory ever shrinks along the path
    (a receptive field never does: that would be a bug in the analysis)."""
    depth = _conv_depth(report)
    row = report.output
    path, merges = [row], []
    while row.parents:
        parents = [report.layers[i] for i in row.parents]
        best = max(parents, key=lambda p: (depth[p.index], _theory(p) if p.rf is not None else -1.0,
                                           _clipped(p)))
        merges.append([p for p in parents if p is not best])
        path.append(best)
        row = best
    path.reverse()
    merges.reverse()  # merges[i]: the branches beside path[i]
    side = [(step, p) for step, others in enumerate(merges) for p in others]
    theory = [_theory(r) for r in path]
    known = [t for t in theory if not math.isnan(t)]
    if any(b < a for a, b in zip(known, known[1:])):
        raise RuntimeError(f"the theoretical RF shrinks along the path: {known}")
    jump = [float(r.rf[1].jump) if r.rf is not None else math.nan for r in path]
    return GrowthPath(path, theory, [_clipped(r) for r in path], jump, side)


def _short(row: rfm.LayerRF) -> str:
    """A branch label: the end of its module name and its conv parameters, or the op (resampling)."""
    tail = ".".join(row.name.split(".")[-2:])
    text = f"{tail} ({row.params})" if "conv" in row.op.lower() else f"{tail} ({row.op})"
    return text if len(text) <= 32 else text[:31] + "…"


def plot_rf_growth(
    stacks: Mapping[str, nn.Module | rfm.ReceptiveFieldReport] | None = None,
    input_size: int | tuple[int, int] = 129,
    path: PathLike = None,
) -> Figure:
    """Theoretical RF, clipped RF and jump at each step of the path to the output, one series per network.

    By default the plain, strided and atrous teaching stacks: linear growth, fast growth at lost
    resolution, exponential growth at full resolution. At a merge (residual add, ASPP concatenation)
    the path follows the branch with the largest RF; the other branches are separate labelled markers
    at the same step, never joined into the line. Networks whose curves coincide are named in a note
    (they keep distinct markers and line styles, so each stays visible)."""
    if stacks is None:
        stacks = {"plain": rfm.plain_stack(), "strided": rfm.strided_stack(), "atrous": rfm.atrous_stack()}
    paths = {}
    for name, model in stacks.items():
        is_report = isinstance(model, rfm.ReceptiveFieldReport)
        report = model if is_report else rfm.receptive_field(model, input_size)
        if not report.supported:
            problems = "; ".join(report.problems)
            raise rfm.UnsupportedModelError(f"stacks[{name!r}] cannot be analysed: {problems}")
        paths[name] = (rf_path(report), report.input_size)
    fig = Figure(figsize=(10, 9), layout="constrained")
    ax_rf, ax_clip, ax_jump = fig.subplots(3, 1, sharex=True)
    starred = False
    named: set[tuple[int, int, float]] = set()
    for i, (name, (gp, size)) in enumerate(paths.items()):
        style = series_style(i, len(paths))
        steps = list(range(len(gp.rows)))
        ax_rf.plot(steps, gp.theory, label=name, gid=f"theory-{name}", **style)
        ax_clip.plot(steps, gp.clipped, label=name, gid=f"clipped-{name}", **style)
        ax_jump.plot(steps, gp.jump, label=name, gid=f"jump-{name}", **style)
        ax_clip.axhline(size[1], color=style["color"], linewidth=0.8, alpha=0.6, linestyle=(0, (1, 3)))
        if not gp.side:
            continue
        xs = [s for s, _ in gp.side]
        side_theory, side_clipped = [_theory(r) for _, r in gp.side], [_clipped(r) for _, r in gp.side]
        for ax, values in ((ax_rf, side_theory), (ax_clip, side_clipped)):
            ax.plot(xs, values, linestyle="none", marker="*", markersize=12, color=style["color"],
                    markeredgecolor="black", markeredgewidth=0.5, gid=f"branches-{name}",
                    label="_" if starred else "branch beside the path (colour: its network)")
        starred = True
        # a merge of three or more branches (ASPP): name each one, the path's own branch included
        wide = [] if named else [s for s in set(xs) if xs.count(s) >= 2]
        for step, row in [(s, r) for s, r in gp.side if s in wide] + [(s, gp.rows[s]) for s in wide]:
            for k, (ax, value) in enumerate(((ax_rf, _theory(row)), (ax_clip, float(_clipped(row))))):
                # the theory panel names the conv branches; the clipped panel only those without theory
                if math.isnan(value) or (k == 1 and row.rf is not None) or (k, step, value) in named:
                    continue
                named.add((k, step, value))
                ax.annotate(_short(row), (step, value), xytext=(-8, 0), textcoords="offset points",
                            fontsize=8, ha="right", va="center", gid="branch-label")
    groups: dict[tuple, list[str]] = {}
    for name, (gp, _) in paths.items():
        groups.setdefault((tuple(gp.theory), tuple(gp.clipped), tuple(gp.jump)), []).append(name)
    same = [names for names in groups.values() if len(names) > 1]
    note = "; ".join(f"{', '.join(names)} coincide at every step" for names in same)
    if note:
        fig.text(0.5, -0.01, note + " (each keeps its own marker and line style)", ha="center", va="top",
                 fontsize=10, gid="coincide-note")
    ax_rf.set_title(r"theory (unbounded image): $r_l = r_{l-1} + (k_{\mathrm{eff}} - 1)\,j_{l-1}$,"
                    r" $k_{\mathrm{eff}} = k + (k-1)(d-1)$")
    ax_rf.set_ylabel("theoretical RF (pixels)")
    ax_clip.set_title("clipped to the input: pixels that reach the central output (dotted: input width)")
    ax_clip.set_ylabel("clipped RF (pixels)")
    ax_jump.set_title(r"jump $j_l = j_{l-1}\,s_l$ (resolution lost; none after resampling)")
    ax_jump.set_ylabel("jump (input pixels)")
    ax_jump.set_yscale("log", base=2)
    ax_jump.set_xlabel("step along the path to the output (0 = input)")
    for ax in (ax_rf, ax_clip, ax_jump):
        ax.grid(alpha=0.3)
    ax_rf.legend(fontsize=9, loc="upper left")
    fig.suptitle("receptive field along the path to the output")
    return _save(fig, path)
