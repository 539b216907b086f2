"""The analysis' result: one LayerRF per feature map, the ReceptiveFieldReport, input boxes and the table.

The theoretical numbers (``LayerRF.rf``) are *unclipped*: they describe a network on an endless image.
At borders the pixels that actually influence an output are fewer (the rest is zero padding);
``input_box_clipped`` gives the exact bounding box of those pixels, which is what a gradient measures.
Measure at a central output, whose RF lies inside the image, and the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .arithmetic import AxisRF

__all__ = [
    "Box",
    "LayerRF",
    "ReceptiveFieldReport",
    "UnsupportedModelError",
    "format_table",
    "input_box",
    "input_box_clipped",
]

Box = tuple[int, int, int, int]  # (top, left, bottom, right), inclusive


class UnsupportedModelError(ValueError):
    """The analysis met an operation it cannot describe, or a question it cannot answer exactly."""


def _fmt_pair(a: Any, b: Any) -> str:
    def one(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    return one(a) if a == b else f"{one(a)}x{one(b)}"


@dataclass(frozen=True, eq=False)
class LayerRF:
    """One row of the analysis: a feature map produced by a module or a functional op.

    ``rf`` is the theory ``(vertical, horizontal)`` or ``None`` where it does not exist (after
    upsampling, uneven adaptive pooling or broadcasting the map is not translation-equivariant, so no
    single ``(r, j, start)`` describes it) or where the op is unsupported. ``parents`` index the rows this
    one reads; more than one means a union of branches (concatenation, addition).
    """

    index: int
    name: str
    op: str
    params: str
    size: tuple[int, int]
    channels: int | None
    parents: tuple[int, ...]
    rf: tuple[AxisRF, AxisRF] | None
    supported: bool = True
    note: str = ""
    # Exact clipped support per output position and axis (bounding boxes; lo > hi means empty).
    lo: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    hi: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.name or "<model>"

    @property
    def centre_position(self) -> tuple[int, int]:
        """The central output position ``((H - 1) // 2, (W - 1) // 2)``."""
        return (self.size[0] - 1) // 2, (self.size[1] - 1) // 2

    def _check_position(self, y: int, x: int) -> None:
        if not (0 <= y < self.size[0] and 0 <= x < self.size[1]):
            raise IndexError(
                f"output position (y={y}, x={x}) is outside the {self.size[0]}x{self.size[1]} map "
                f"of #{self.index}"
            )

    def _require_supported(self) -> None:
        if not self.supported:
            raise UnsupportedModelError(
                f"#{self.index} {self.label} ({self.op}) cannot be analysed: {self.note}"
            )

    def box(self, y: int, x: int) -> Box:
        """Unclipped theoretical RF of output ``(y, x)`` as ``(top, left, bottom, right)``, inclusive."""
        self._require_supported()
        if self.rf is None:
            raise UnsupportedModelError(
                f"#{self.index} {self.label} ({self.op}) is not translation-equivariant "
                f"({self.note or 'upsampling or broadcasting upstream'}), "
                "so it has no unclipped theoretical RF; use input_box_clipped"
            )
        self._check_position(y, x)
        top, bottom = self.rf[0].interval(y)
        left, right = self.rf[1].interval(x)
        return top, left, bottom, right

    def box_clipped(self, y: int, x: int) -> Box | None:
        """Exact bounding box of the input pixels that influence output ``(y, x)`` (what a gradient
        measures), or ``None`` when it sees only padding. Contained in ``box`` intersected with the image."""
        self._require_supported()
        self._check_position(y, x)
        assert self.lo is not None and self.hi is not None
        top, bottom = int(self.lo[0][y]), int(self.hi[0][y])
        left, right = int(self.lo[1][x]), int(self.hi[1][x])
        if top > bottom or left > right:
            return None
        return top, left, bottom, right

    def size_at(self, y: int, x: int) -> tuple[int, int]:
        """Height and width of the clipped RF of output ``(y, x)`` (0 when empty)."""
        b = self.box_clipped(y, x)
        return (0, 0) if b is None else (b[2] - b[0] + 1, b[3] - b[1] + 1)


@dataclass
class ReceptiveFieldReport:
    """The per-layer analysis of a model for one input size; ``output`` is the model's output row."""

    input_size: tuple[int, int]
    layers: list[LayerRF]
    output_index: int | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def output(self) -> LayerRF:
        if self.output_index is None:
            raise UnsupportedModelError("the model output could not be traced: " + "; ".join(self.problems))
        return self.layers[self.output_index]

    @property
    def supported(self) -> bool:
        return self.output_index is not None and self.layers[self.output_index].supported

    def __getitem__(self, key: int | str) -> LayerRF:
        """Row by index, or the last row produced by the module with that qualified name."""
        if isinstance(key, int):
            return self.layers[key]
        rows = [r for r in self.layers if r.name == key]
        if not rows:
            raise KeyError(f"no layer named {key!r}; names: {sorted({r.name for r in self.layers})}")
        return rows[-1]

    def __len__(self) -> int:
        return len(self.layers)

    def branches(self, layer: int | str | LayerRF) -> list[LayerRF]:
        """The rows a union row merges (one per branch); a plain row returns its single parent."""
        row = layer if isinstance(layer, LayerRF) else self[layer]
        return [self.layers[i] for i in row.parents]

    def ancestors(self, layer: int | str | LayerRF | None = None) -> list[LayerRF]:
        """Rows the given row (default: output) depends on, itself included, in execution order."""
        row = self.output if layer is None else layer if isinstance(layer, LayerRF) else self[layer]
        seen, stack = set(), [row.index]
        while stack:
            i = stack.pop()
            if i not in seen:
                seen.add(i)
                stack.extend(self.layers[i].parents)
        return [self.layers[i] for i in sorted(seen)]

    def table(self) -> str:
        return format_table(self)

    def __str__(self) -> str:
        return self.table()


def _rf_of(info: ReceptiveFieldReport | LayerRF) -> LayerRF:
    if isinstance(info, ReceptiveFieldReport):
        return info.output
    if isinstance(info, LayerRF):
        return info
    raise TypeError(f"rf_info must be a ReceptiveFieldReport or LayerRF, got {type(info).__name__}")


def input_box(rf_info: ReceptiveFieldReport | LayerRF | tuple[AxisRF, AxisRF], y: int, x: int) -> Box:
    """Unclipped input box ``(top, left, bottom, right)`` (inclusive) seen by output ``(y, x)``:
    ``top = start_y + y j_y - (r_y - 1)/2``, ``bottom = top + r_y - 1``, likewise for columns.
    Accepts a report (its output), a row, or a ``(vertical, horizontal)`` pair of ``AxisRF``."""
    if isinstance(rf_info, tuple) and len(rf_info) == 2 and all(isinstance(a, AxisRF) for a in rf_info):
        top, bottom = rf_info[0].interval(y)
        left, right = rf_info[1].interval(x)
        return top, left, bottom, right
    return _rf_of(rf_info).box(y, x)


def input_box_clipped(rf_info: ReceptiveFieldReport | LayerRF, y: int, x: int) -> Box | None:
    """Exact bounding box of the image pixels that influence output ``(y, x)`` (padding excluded),
    or ``None`` if it sees only padding. Equals the gradient-measured support's bounding box."""
    return _rf_of(rf_info).box_clipped(y, x)

def format_table(report: ReceptiveFieldReport) -> str:
    """Distill-style table: layer, op, params, feature size, channels, RF, jump, start, RF at the centre.

    RF, jump and start are the unclipped theory; ``RF@centre`` is the clipped RF of the central output
    (what a gradient measures there). A ``*`` marks rows without a theory (not translation-equivariant).
    """
    header = ["#", "layer", "op", "params", "size", "C", "RF", "jump", "start", "RF@centre"]
    lines = []
    starred = False
    on_path = {r.index for r in report.ancestors()} if report.supported else set()
    for r in report.layers:
        size = _fmt_pair(*r.size) if r.size != (0, 0) else "-"
        if not r.supported:
            note = "unsupported: " + r.note
            lines.append([str(r.index), r.label, r.op, "", size, "-", "-", "-", "-", note])
            continue
        if r.rf is not None:
            rf = _fmt_pair(r.rf[0].size, r.rf[1].size)
            jump = _fmt_pair(r.rf[0].jump, r.rf[1].jump)
            start = _fmt_pair(r.rf[0].start, r.rf[1].start)
        else:
            rf, jump, start, starred = "*", "*", "*", True
        centre = _fmt_pair(*r.size_at(*r.centre_position))
        mark = "" if not on_path or r.index in on_path else "  (not on the output's path)"
        channels = "" if r.channels is None else str(r.channels)
        lines.append([str(r.index), r.label, r.op, r.params, size, channels,
                      rf, jump, start, centre + mark])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header[:-1])]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + cells[-1]

    out = [fmt(header), fmt(["-" * w for w in widths] + ["-" * len(header[-1])])]
    out += [fmt(line).rstrip() for line in lines]
    H, W = report.input_size
    out.append("")
    out.append(f"input {H}x{W}. RF, jump, start: unclipped theory (start = centre of output 0's RF in "
               "input pixels, negative = in the padding); RF@centre: clipped RF of the central output.")
    if starred:
        out.append("*: not translation-equivariant (resampling, uneven adaptive pooling, broadcasting): "
                   "no single (RF, jump, start) exists; see RF@centre and input_box_clipped.")
    if report.supported:
        o = report.output
        cy, cx = o.centre_position
        box = o.box_clipped(cy, cx)
        unclipped = f", {o.box(cy, cx)} unclipped" if o.rf is not None else ""
        out.append(f"output #{o.index} {o.label}: central position ({cy}, {cx}) sees input box {box} "
                   f"(clipped){unclipped}")
    for p in report.problems:
        out.append("problem: " + p)
    for w in report.warnings:
        out.append("warning: " + w)
    return "\n".join(out)

