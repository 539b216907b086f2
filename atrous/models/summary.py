"""Per-layer summary of a model: type, output shape, parameters, MACs, dilation and receptive field.

``summary(model, input_size)`` runs one forward pass (eval mode, no gradients) with forward hooks and
prints a table. MACs (multiply-accumulates) are computed analytically for convolutions,
``C_out * C_in / groups * kh * kw * H_out * W_out`` per image, and for linear layers; other layers
(BN, activations, pooling, resampling) count 0. The receptive-field column comes from
:mod:`atrous.receptive_field` when that module is importable and has ``receptive_field``; without it
the column is left out.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

import torch
from torch import nn

from ..receptive_field import receptive_field as _receptive_field

__all__ = ["LayerSummary", "ModelSummary", "summary"]


@dataclass
class LayerSummary:
    """One row: a module (a leaf, or a container at the requested depth) and what it produced."""

    name: str
    type: str
    detail: str  # kernel, stride and kind of a convolution
    output_shape: tuple[int, ...] | None
    params: int
    macs: int
    dilation: str
    receptive_field: str = ""


@dataclass
class ModelSummary:
    input_shape: tuple[int, int, int, int]
    rows: list[LayerSummary]
    total_params: int
    trainable_params: int
    total_macs: int
    has_receptive_field: bool
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        headers = ["layer", "type", "output shape", "params", "MACs", "dilation"]
        if self.has_receptive_field:
            headers.append("RF")
        lines = []
        for r in self.rows:
            kind = f"{r.type} {r.detail}".strip()
            shape = "x".join(str(s) for s in r.output_shape) if r.output_shape else "-"
            cells = [r.name, kind, shape, f"{r.params:,}", _human(r.macs), r.dilation]
            if self.has_receptive_field:
                cells.append(r.receptive_field)
            lines.append(cells)
        widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h)
                  for i, h in enumerate(headers)]
        right = {3, 4}  # numbers

        def fmt(cells: Sequence[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "-" * len(fmt(["-" * w for w in widths]))
        out = [f"input {'x'.join(map(str, self.input_shape))}", rule, fmt(headers), rule]
        out += [fmt(c) for c in lines]
        out += [rule,
                f"parameters: {self.total_params:,} ({self.trainable_params:,} trainable)",
                (f"MACs: {_human(self.total_macs)} ({self.total_macs:,}) for this input "
                 "(convolutions and linear layers)")]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _pair_str(v) -> str:
    v = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"


def _leaf_macs(module: nn.Module, output) -> int:
    if not isinstance(output, torch.Tensor):
        return 0
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_output = module.in_channels // module.groups * kh * kw
        return output.numel() * per_output  # N * C_out * H_out * W_out outputs, each a dot product
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def _conv_detail(module: nn.Module) -> str:
    if not isinstance(module, nn.Conv2d):
        return ""
    kind = getattr(module, "kind", "depthwise" if module.groups == module.in_channels > 1 else "")
    kind = {"pointwise": "1x1", "dense": "", "depthwise": "dw"}.get(kind, kind)
    parts = [f"{module.kernel_size[0]}x{module.kernel_size[1]}"]
    if tuple(module.stride) != (1, 1):
        parts.append(f"/{_pair_str(module.stride)}")
    if kind and kind != "1x1":
        parts.append(kind)
    return "[" + " ".join(parts) + "]"


def _input_shape(model: nn.Module, input_size, in_channels: int | None) -> tuple[int, int, int, int]:
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    size = tuple(int(s) for s in input_size)
    if len(size) == 4:
        return size  # (N, C, H, W)
    if len(size) == 3:
        return (1, *size)
    if len(size) != 2:
        raise ValueError("summary: expected input_size as H, (H, W), (C, H, W) or (N, C, H, W), "
                         f"got {input_size!r}")
    if in_channels is None:
        in_channels = getattr(getattr(model, "backbone", model), "in_channels", None)
    if in_channels is None:
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        in_channels = convs[0].in_channels if convs else 3
    return (1, in_channels, *size)


def _rf_column(model: nn.Module, shape, names: list[str], notes: list[str]) -> dict[str, str]:
    """Receptive field per row name: 'r' (or 'rh x rw'), '-' where none exists (after upsampling or
    global pooling), '?' where the analysis could not follow."""
    try:
        report = _receptive_field(model, (shape[2], shape[3]), in_channels=shape[1])
    except Exception as e:  # noqa: BLE001 - the table is still useful without this column
        notes.append(f"receptive field unavailable: {type(e).__name__}: {e}")
        return {n: "?" for n in names}
    by_name: dict[str, object] = {}
    for row in report.layers:  # the last row produced inside each module is its output
        parts = row.name.split(".") if row.name else []
        for i in range(len(parts)):
            by_name[".".join(parts[: i + 1])] = row
    out, last = {}, None
    for n in names:  # in execution order
        # BN, activations and dropout have no row of their own: their RF is that of their input,
        # the last row before them.
        row = by_name.get(n, last)
        last = row if row is not None else last
        if row is None or not row.supported:
            out[n] = "?"
        elif row.rf is None:
            out[n] = "-"
        else:
            out[n] = _pair_str((row.rf[0].size, row.rf[1].size))
    if any(v == "-" for v in out.values()):
        notes.append("RF '-': the map went through upsampling or global pooling, "
                     "so no single RF describes it")
    return out


def summary(model: nn.Module, input_size, *, in_channels: int | None = None, depth: int | None = None,
            receptive_field: bool = True, show: bool = True, file: TextIO | None = None) -> ModelSummary:
    """Print (unless ``show=False``; to ``file``, default stdout) and return a per-layer table of ``model``.

    Args:
        input_size: H, (H, W), (C, H, W) or (N, C, H, W); channels default to the model's.
        depth: None lists every leaf module; an int lists modules ``depth`` levels deep (their leaves'
            parameters and MACs summed), e.g. ``depth=2`` gives ``backbone.layer1``, ``aspp.convs``, ...
        receptive_field: add the RF column (when :mod:`atrous.receptive_field` is available).
    """
    shape = _input_shape(model, input_size, in_channels)
    named = dict(model.named_modules())

    def selected(name: str, module: nn.Module) -> bool:
        if not name or isinstance(module, nn.Identity):
            return False
        level = name.count(".") + 1
        is_leaf = not any(True for _ in module.children())
        return level == depth or (is_leaf and (depth is None or level < depth))

    rows: dict[str, LayerSummary] = {}
    owner = {}  # leaf name -> the selected row it adds its MACs to
    chosen_order = [n for n, m in named.items() if selected(n, m)]
    chosen = set(chosen_order)
    for leaf in (n for n, m in named.items() if n and not any(True for _ in m.children())):
        for n in chosen_order:
            if leaf == n or leaf.startswith(n + "."):
                owner[leaf] = n
                break

    def open_row(name: str) -> LayerSummary:
        # A row opens when its module, or the first leaf it owns, runs: containers that are iterated
        # rather than called (an nn.ModuleList, a Sequential walked in a loop) still get their row.
        if name not in rows:
            module = named[name]
            dil = sorted({_pair_str(m.dilation) for m in module.modules()
                          if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1}, key=lambda s: (len(s), s))
            rows[name] = LayerSummary(name, type(module).__name__, _conv_detail(module), None,
                                      sum(p.numel() for p in module.parameters()), 0, ",".join(dil))
        return rows[name]

    called = set()  # rows whose own module ran (their output shape is their own)

    def pre_hook(name):
        def hook(module, args):
            if name in chosen:
                open_row(name)
                called.add(name)
            if name in owner:
                open_row(owner[name])
        return hook

    def post_hook(name):
        def hook(module, args, output):
            if not isinstance(output, torch.Tensor):
                return
            if name in chosen:
                rows[name].output_shape = tuple(output.shape)
            if name in owner:
                row = rows[owner[name]]
                row.macs += _leaf_macs(module, output)
                if owner[name] not in called and not isinstance(
                        named[owner[name]], (nn.ModuleList, nn.ModuleDict)):
                    row.output_shape = tuple(output.shape)  # a Sequential walked in a loop: its last leaf
        return hook

    handles = []
    for name, module in named.items():
        if name in chosen or name in owner:
            handles.append(module.register_forward_pre_hook(pre_hook(name)))
            handles.append(module.register_forward_hook(post_hook(name)))
    was_training = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape, dtype=dtype, device=device))
    finally:
        for h in handles:
            h.remove()
        for m, t in was_training.items():
            m.training = t

    notes: list[str] = []
    result_rows = list(rows.values())
    use_rf = bool(receptive_field)
    if use_rf:
        column = _rf_column(model, shape, [r.name for r in result_rows], notes)
        for r in result_rows:
            r.receptive_field = column.get(r.name, "?")
    params = list(model.parameters())
    result = ModelSummary(
        input_shape=shape, rows=result_rows,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_macs=sum(r.macs for r in result_rows), has_receptive_field=use_rf, notes=notes)
    if show:
        print(result.table(), file=sys.stdout if file is None else file)
    return result
