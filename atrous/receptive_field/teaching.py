"""Teaching networks for receptive fields: parallel branches, ASPP's image pooling, and small conv stacks
(plain, strided, atrous, gridding, hybrid, multi-grid, ASPP) named in ``TEACHING_STACKS``.

The stacks are 16 channels wide: at 4, a random initialisation often leaves every ReLU on the path
dead, and the gradient pictures (ERF) come out empty. ``seeded_stack`` builds one reproducibly."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TEACHING_STACKS",
    "ImagePooling",
    "LayerSpec",
    "Parallel",
    "aspp_stack",
    "atrous_stack",
    "conv_stack",
    "gridding_stack",
    "hybrid_stack",
    "multigrid_stack",
    "plain_stack",
    "seeded_stack",
    "strided_stack",
]


class Parallel(nn.Module):
    """Branches applied to the same input and merged by channel concatenation (``'cat'``) or by
    summation (``'sum'``); the analysis reports each branch and their union."""

    def __init__(self, *branches: nn.Module, merge: str = "cat"):
        super().__init__()
        if not branches:
            raise ValueError("Parallel needs at least one branch")
        if merge not in ("cat", "sum"):
            raise ValueError(f"merge must be 'cat' or 'sum', got {merge!r}")
        self.branches = nn.ModuleList(branches)
        self.merge = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        return torch.cat(outs, dim=1) if self.merge == "cat" else functools.reduce(torch.add, outs)


class ImagePooling(nn.Module):
    """ASPP's image-level branch: global average pooling, a 1x1 conv, bilinear upsampling back to the
    input's size (its RF is the whole input)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(self.pool(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)


LayerSpec = Sequence[int]  # (kernel, stride, padding, dilation)


def conv_stack(
    layers: Iterable[LayerSpec], channels: int = 4, in_channels: int = 3, relu: bool = True
) -> nn.Sequential:
    """A stack of ``nn.Conv2d(kernel, stride, padding, dilation)`` layers (each followed by ReLU)."""
    mods: list[nn.Module] = []
    c_in = in_channels
    for n, spec in enumerate(layers):
        spec = tuple(spec) + (1, 0, 1)[len(spec) - 1:] if 1 <= len(spec) < 4 else tuple(spec)
        if len(spec) != 4:
            raise ValueError(f"layers[{n}] must be (kernel, stride, padding, dilation), got {spec!r}")
        k, s, p, d = spec
        mods.append(nn.Conv2d(c_in, channels, k, stride=s, padding=p, dilation=d))
        if relu:
            mods.append(nn.ReLU(inplace=True))
        c_in = channels
    return nn.Sequential(*mods)


def _dilated(rates: Iterable[int]) -> list[LayerSpec]:
    return [(3, 1, r, r) for r in rates]


def plain_stack(depth: int = 6, channels: int = 16) -> nn.Sequential:
    """``depth`` 3x3 convolutions: RF ``2 depth + 1``, grows linearly."""
    return conv_stack([(3, 1, 1, 1)] * depth, channels)


def strided_stack(depth: int = 6, channels: int = 16) -> nn.Sequential:
    """3x3 convolutions, every other one with stride 2: the RF grows fast but the map shrinks."""
    return conv_stack([(3, 2 if i % 2 == 0 else 1, 1, 1) for i in range(depth)], channels)


def atrous_stack(rates: Sequence[int] = (1, 2, 4, 8, 16), channels: int = 16) -> nn.Sequential:
    """3x3 convolutions with exponentially growing rates (Yu & Koltun's context module): the RF grows
    exponentially while the map keeps its resolution."""
    return conv_stack(_dilated(rates), channels)


def gridding_stack(rate: int = 2, depth: int = 3, channels: int = 16) -> nn.Sequential:
    """Equal-rate 3x3 convolutions: only every ``rate``-th pixel reaches an output (gridding)."""
    return conv_stack(_dilated([rate] * depth), channels)


def hybrid_stack(rates: Sequence[int] = (1, 2, 3), repeats: int = 2, channels: int = 16) -> nn.Sequential:
    """Hybrid dilated convolution (Wang et al., 2018): rates without a common factor, no holes."""
    return conv_stack(_dilated(list(rates) * repeats), channels)


def multigrid_stack(rates: Sequence[int] = (1, 2, 4), repeats: int = 2, channels: int = 16) -> nn.Sequential:
    """DeepLabV3's multi-grid unit rates (1, 2, 4) in a block: no holes, a larger RF."""
    return conv_stack(_dilated(list(rates) * repeats), channels)


def aspp_stack(
    output_stride: int = 16, rates: Sequence[int] = (6, 12, 18), channels: int = 16
) -> nn.Sequential:
    """A toy DeepLabV3: a stem of stride-2 3x3 convs down to ``output_stride``, then ASPP (a 1x1 branch,
    one 3x3 branch per rate, image pooling) concatenated and projected by a 1x1 conv."""
    if output_stride < 1 or output_stride & (output_stride - 1):
        raise ValueError(f"output_stride must be a power of two, got {output_stride}")
    stem = conv_stack([(3, 2, 1, 1)] * int(math.log2(output_stride)), channels)
    branches = [nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU())]
    branches += [nn.Sequential(nn.Conv2d(channels, channels, 3, padding=r, dilation=r), nn.ReLU())
                 for r in rates]
    branches.append(ImagePooling(channels, channels))
    return nn.Sequential(
        stem,
        Parallel(*branches, merge="cat"),
        nn.Conv2d(channels * len(branches), channels, 1),
    )


TEACHING_STACKS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "plain": (plain_stack, "six 3x3 convs, stride 1"),
    "strided": (strided_stack, "six 3x3 convs, stride 2 every other layer"),
    "atrous": (atrous_stack, "3x3 convs at rates 1, 2, 4, 8, 16"),
    "gridding": (gridding_stack, "three 3x3 convs at rate 2 (holes)"),
    "hybrid": (hybrid_stack, "3x3 convs at rates 1, 2, 3, 1, 2, 3"),
    "multigrid": (multigrid_stack, "3x3 convs at rates 1, 2, 4, 1, 2, 4"),
    "aspp": (aspp_stack, "stride-16 stem + ASPP (1x1, rates 6, 12, 18, image pooling)"),
    "aspp8": (functools.partial(aspp_stack, 8, (12, 24, 36)),
              "stride-8 stem + ASPP (1x1, rates 12, 24, 36, image pooling)"),
}


def seeded_stack(name: str, seed: int = 0) -> nn.Module:
    """``TEACHING_STACKS[name]`` built with its weights drawn from ``torch.manual_seed(seed)``, without
    touching the global random state (the same picture on every run)."""
    if name not in TEACHING_STACKS:
        raise ValueError(f"name must be one of {sorted(TEACHING_STACKS)}, got {name!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TEACHING_STACKS[name][0]()
