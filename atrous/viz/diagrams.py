"""Block diagrams drawn from the model itself: ASPP and the DeepLabV3+ encoder-decoder, with the tensor
shape on every arrow recorded by forward hooks while the model runs (so the picture cannot drift from
the code)."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from torch import nn

from .common import PathLike, _save
from .theme import OKABE_ITO

__all__ = ["plot_aspp_diagram", "plot_deeplab_diagram", "tensor_shapes"]


def tensor_shapes(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Run ``model(x)`` in eval mode without gradients and return the output shape (without the batch) of
    each named submodule (``"aspp.convs.0"``, ...; a dict output records its ``"out"`` and ``"low"``
    entries as ``name:out``, ``name:low``), plus ``"input"`` and ``"output"``."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"names: no submodule {missing[0]!r} in {type(model).__name__}")
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(x.shape[1:])}

    def hook(name):
        def record(_module, _inputs, output):
            if isinstance(output, dict):
                for key, value in output.items():
                    shapes[f"{name}:{key}"] = tuple(value.shape[1:])
            else:
                shapes[name] = tuple(output.shape[1:])
        return record

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            y = model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    shapes["output"] = tuple((y["out"] if isinstance(y, dict) else y).shape[1:])
    return shapes


def _fmt(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)


class _Canvas:
    """Boxes at (x, y) centres in axis units and arrows labelled with shapes."""

    def __init__(self, ax):
        self.ax = ax

    def box(self, x, y, text, colour, w=2.6, h=0.8, gid=None):
        self.ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05",
                                         facecolor=colour, edgecolor="black", linewidth=1.0, gid=gid))
        self.ax.text(x, y, text, ha="center", va="center", fontsize=9)

    def arrow(self, a, b, label="", gid="arrow"):
        self.ax.annotate("", xy=b, xytext=a, arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.2})
        if label:
            flat = a[1] == b[1]  # a horizontal arrow: the label above it
            self.ax.text((a[0] + b[0]) / 2 + (0 if flat else 0.08), (a[1] + b[1]) / 2 + (0.18 if flat else 0),
                         label, fontsize=8, ha="center" if flat else "left", va="center", color="#333333",
                         gid=gid, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})


def _branch_names(aspp: nn.Module) -> list[str]:
    names = []
    rates = list(getattr(aspp, "rates", []))
    for i, _ in enumerate(aspp.convs):
        if i == 0:
            names.append("1x1 conv")
        elif i == len(aspp.convs) - 1:
            names.append("image pooling\n(mean, 1x1, upsample)")
        else:
            names.append(f"3x3 conv, rate {rates[i - 1]}" if i - 1 < len(rates) else f"branch {i}")
    return names


def plot_aspp_diagram(model: nn.Module, input_size: int | tuple[int, int] = 129,
                      path: PathLike = None) -> Figure:
    """ASPP (DeepLabV3 Fig. 5): the backbone's features, the parallel branches (1x1, one 3x3 per rate,
    image pooling), their concatenation and the 1x1 projection, every arrow labelled with the shape
    C x H x W the model produced for a ``input_size`` input. ``model`` has ``backbone`` and ``aspp``."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    aspp = model.aspp
    n = len(aspp.convs)
    names = ["backbone", *[f"aspp.convs.{i}" for i in range(n)], "aspp.project", "aspp"]
    x = torch.zeros(1, getattr(model.backbone, "in_channels", 3), h, w)
    shapes = tensor_shapes(model, x, names)
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    ax = fig.subplots()
    c = _Canvas(ax)
    width = max(3.2 * n, 10)
    xs = [width * (i + 0.5) / n for i in range(n)]
    mid = width / 2
    c.box(mid, 6, f"backbone features\n(output stride {getattr(model.backbone, 'output_stride', '?')})",
          OKABE_ITO[1], w=3.4, gid="features")
    feat = shapes["backbone:out"]
    for i, (bx, label) in enumerate(zip(xs, _branch_names(aspp))):
        c.box(bx, 4, label, OKABE_ITO[0] if i else OKABE_ITO[2], w=2.9, h=0.9, gid=f"branch-{i}")
        c.arrow((mid, 5.55), (bx, 4.5), _fmt(feat) if i == 0 else "")
        c.arrow((bx, 3.5), (mid, 2.45), _fmt(shapes[f"aspp.convs.{i}"]))
    concat = (sum(shapes[f"aspp.convs.{i}"][0] for i in range(n)), *shapes["aspp.convs.0"][1:])
    c.box(mid, 2, "concatenate channels", "#dddddd", w=3.4, h=0.7, gid="concat")
    c.arrow((mid, 1.65), (mid, 0.95), _fmt(concat))
    c.box(mid, 0.5, "1x1 conv, BN, ReLU (projection)", OKABE_ITO[2], w=3.8, h=0.7, gid="project")
    c.arrow((mid, 0.15), (mid, -0.55), _fmt(shapes["aspp"]))
    ax.text(mid, -0.8, "to the decoder / classifier", ha="center", va="top", fontsize=9)
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(-1.2, 6.6)
    ax.axis("off")
    fig.suptitle(f"ASPP as built (shapes C x H x W recorded from a {h}x{w} input)")
    fig.shapes = shapes  # what the labels were drawn from
    return _save(fig, path)


def plot_deeplab_diagram(model: nn.Module, input_size: int | tuple[int, int] = 129,
                         path: PathLike = None) -> Figure:
    """The DeepLabV3+ encoder-decoder (its paper's Fig. 2): backbone, ASPP, the decoder's 1x1 low-level
    projection, upsampling, concatenation, 3x3 convs and classifier, every arrow labelled with the
    shape the model produced. Works for DeepLabV3 too (no decoder: classifier and upsampling)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    has_decoder = hasattr(model, "decoder")
    names = ["backbone", "aspp"] + (["decoder.project", "decoder.convs", "decoder.classifier"] if has_decoder
                                    else ["classifier"])
    x = torch.zeros(1, getattr(model.backbone, "in_channels", 3), h, w)
    shapes = tensor_shapes(model, x, names)
    fig = Figure(figsize=(10, 6), layout="constrained")
    ax = fig.subplots()
    c = _Canvas(ax)
    enc, dec = OKABE_ITO[1], OKABE_ITO[0]
    c.box(1.5, 5, "input image", "#eeeeee", w=2.2, gid="input")
    stride = getattr(model.backbone, "output_stride", "?")
    c.box(1.5, 3, f"backbone\n(output stride {stride})", enc, gid="backbone")
    c.arrow((1.5, 4.6), (1.5, 3.4), _fmt(shapes["input"]))
    c.box(5.0, 3, "ASPP", enc, w=2.0, gid="aspp")
    c.arrow((2.8, 3), (4.0, 3), _fmt(shapes["backbone:out"]))
    ax.text(5.0, 4.0, "encoder", fontsize=11, ha="center", color="#555555")
    if has_decoder:
        c.box(1.5, 0.8, "1x1 conv\n(low-level projection)", dec, gid="low-proj")
        c.arrow((1.5, 2.6), (1.5, 1.2), "low-level: " + _fmt(shapes["backbone:low"]))
        low = shapes["decoder.project"]
        c.box(5.0, 1.8, f"upsample to {low[1]}x{low[2]}\n(bilinear)", "#dddddd", w=2.0, gid="upsample")
        c.arrow((5.0, 2.6), (5.0, 2.2), _fmt(shapes["aspp"]))
        c.box(8.0, 0.8, "concatenate", "#dddddd", w=2.0, h=0.6, gid="concat")
        c.arrow((2.8, 0.8), (7.0, 0.8), _fmt(low))
        c.arrow((6.0, 1.8), (7.5, 1.1), _fmt((shapes["aspp"][0], *low[1:])))
        c.box(8.0, 2.6, "3x3 convs", dec, w=2.0, h=0.6, gid="convs")
        c.arrow((8.0, 1.1), (8.0, 2.3), _fmt((shapes["aspp"][0] + low[0], *low[1:])))
        c.box(8.0, 4.0, "1x1 classifier,\nupsample to the input", dec, w=2.2, gid="classifier")
        c.arrow((8.0, 2.9), (8.0, 3.6), _fmt(shapes["decoder.convs"]))
        ax.text(4.2, 0.1, "decoder", fontsize=11, ha="center", color="#555555")
    else:
        c.box(8.0, 3, "1x1 classifier,\nupsample", dec, w=2.2, gid="classifier")
        c.arrow((6.0, 3), (6.9, 3), _fmt(shapes["aspp"]))
    c.box(8.0, 5.4, "prediction", "#eeeeee", w=2.2, gid="output")
    c.arrow((8.0, 4.4), (8.0, 5.0), _fmt(shapes["output"]))
    ax.set_xlim(0, 9.6)
    ax.set_ylim(-0.2, 6.0)
    ax.axis("off")
    kind = "DeepLabV3+" if has_decoder else "DeepLabV3"
    fig.suptitle(f"{kind} as built: {type(model.backbone).__name__} backbone, shapes C x H x W "
                 f"recorded from a {h}x{w} input")
    fig.shapes = shapes
    return _save(fig, path)
