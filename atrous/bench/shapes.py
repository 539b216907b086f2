"""The shapes timed: DeepLabV3+ Xception-65 layers at a 513x513 input, and how a run selects them."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..receptive_field.arithmetic import conv_output_size
from .common import BenchError

__all__ = ["BOTH", "DEFAULT_LADDER_SHAPE", "DEMO_SHAPES", "QUICK_SHAPES", "SHAPES", "TINY_SHAPES", "Case",
           "ModelCase", "Shape", "select_cases", "select_models"]


@dataclass(frozen=True)
class Shape:
    """One convolution layer. Depthwise and separable: `channels` in (depth multiplier 1);
    pointwise and dense: `channels` -> `out_channels`. Square planes and kernels."""

    name: str  # stable short name, e.g. "os16-middle-dw728"; cases append "-n<batch>"
    op: str  # depthwise | pointwise | dense | separable
    where: str  # the layer in the network
    output_strides: tuple[int, ...]  # (16,), (8,) or (16, 8) for layers identical at both
    channels: int
    out_channels: int
    size: int  # input H = W
    kernel: int = 3
    stride: int = 1
    dilation: int = 1

    @property
    def padding(self) -> int:
        # "same" padding, which at stride 2 also gives DeepLab's 257 -> 129 -> 65 -> 33
        return self.dilation * (self.kernel - 1) // 2

    @property
    def out_size(self) -> int:
        return conv_output_size(self.size, self.kernel, self.stride, self.padding, self.dilation)

    def describe(self) -> str:
        extra = "".join(f" {k}{v}" for k, v in (("s", self.stride), ("d", self.dilation)) if v > 1)
        return (f"{self.channels}x{self.size}x{self.size} -> {self.out_channels}x{self.out_size}x"
                f"{self.out_size}, {self.kernel}x{self.kernel}{extra}")


@dataclass(frozen=True)
class Case:
    """A shape at one batch size: the unit that is timed and reported."""

    shape: Shape
    batch: int

    @property
    def name(self) -> str:
        return f"{self.shape.name}-n{self.batch}"

    @property
    def input_dims(self) -> str:
        s = self.shape
        return f"{self.batch}x{s.channels}x{s.size}x{s.size}"


@dataclass(frozen=True)
class ModelCase:
    """A whole model (a name in the model registry) at one batch size and square input size."""

    model: str
    batch: int
    size: int
    steps: tuple[str, ...] | None = None  # the steps timed on this case; None: all the run's steps

    @property
    def name(self) -> str:
        return f"{self.model}-{self.size}-n{self.batch}"

    @property
    def input_dims(self) -> str:
        return f"{self.batch}x3x{self.size}x{self.size}"


def _dw(name: str, where: str, os_: tuple[int, ...], c: int, size: int, dilation: int = 1,
        stride: int = 1) -> Shape:
    return Shape(name, "depthwise", where, os_, c, c, size, 3, stride, dilation)


def _pw(name: str, where: str, os_: tuple[int, ...], c: int, c_out: int, size: int) -> Shape:
    return Shape(name, "pointwise", where, os_, c, c_out, size, kernel=1)


def _sep(name: str, where: str, os_: tuple[int, ...], c: int, c_out: int, size: int,
         dilation: int = 1) -> Shape:
    return Shape(name, "separable", where, os_, c, c_out, size, 3, 1, dilation)


BOTH = (16, 8)

# Xception-65 as DeepLab builds it (tensorflow/models research/deeplab/core/xception.py): a 3x3
# stride-2 stem (513 -> 257), then entry-flow blocks of three separable convs with 128, 256, 728
# channels, the last conv of each strided (257 -> 129 -> 65 -> 33); 16 middle-flow blocks at 728;
# exit flow [728, 1024, 1024] then [1536, 1536, 2048]. At output stride 16 the exit flow's stride
# turns into dilation (1 then 2); at OS8 entry block 3 keeps stride 1 too, so the middle flow runs
# at 65x65 dilation 2 and the exit flow at 2 then 4. Depthwise layers appear at the width of the
# separable conv's *input*. Layers identical at both output strides carry no "os" prefix.
SHAPES: tuple[Shape, ...] = (
    _dw("entry-dw128", "entry flow block 1", BOTH, 128, 257),
    _dw("entry-dw128-s2", "entry flow block 1 (strided)", BOTH, 128, 257, stride=2),
    _dw("entry-dw256", "entry flow block 2", BOTH, 256, 129),
    _dw("entry-dw256-s2", "entry flow block 2 (strided)", BOTH, 256, 129, stride=2),
    _dw("entry-dw728", "entry flow block 3", BOTH, 728, 65),  # at OS8 also its last conv
    _dw("os16-entry-dw728-s2", "entry flow block 3 (strided)", (16,), 728, 65, stride=2),
    _dw("os16-middle-dw728", "middle flow", (16,), 728, 33),
    _dw("os8-middle-dw728-d2", "middle flow", (8,), 728, 65, dilation=2),
    _dw("os16-exit-dw1024", "exit flow block 1", (16,), 1024, 33),
    _dw("os16-exit-dw1536-d2", "exit flow block 2", (16,), 1536, 33, dilation=2),
    _dw("os8-exit-dw1024-d2", "exit flow block 1", (8,), 1024, 65, dilation=2),
    _dw("os8-exit-dw1536-d4", "exit flow block 2", (8,), 1536, 65, dilation=4),
    *(_dw(f"os16-aspp-dw2048-r{r}", f"ASPP rate {r}", (16,), 2048, 33, dilation=r) for r in (6, 12, 18)),
    *(_dw(f"os8-aspp-dw2048-r{r}", f"ASPP rate {r}", (8,), 2048, 65, dilation=r) for r in (12, 24, 36)),
    _dw("dec-dw304", "decoder (256 ASPP + 48 low-level)", BOTH, 304, 129),
    _dw("dec-dw256", "decoder", BOTH, 256, 129),
    _pw("os16-middle-pw728-728", "middle flow", (16,), 728, 728, 33),
    _pw("os8-middle-pw728-728", "middle flow", (8,), 728, 728, 65),
    _pw("os16-exit-pw1536-2048", "exit flow block 2", (16,), 1536, 2048, 33),
    _pw("os8-exit-pw1536-2048", "exit flow block 2", (8,), 1536, 2048, 65),
    _pw("os16-aspp-pw2048-256", "ASPP projection", (16,), 2048, 256, 33),
    _pw("os8-aspp-pw2048-256", "ASPP projection", (8,), 2048, 256, 65),
    _pw("dec-pw304-256", "decoder", BOTH, 304, 256, 129),
    # Dense atrous 3x3 with 512 channels: a ResNet-101 backbone's last stage, dilation 2 at OS16
    # and 4 at OS8 (the dilated-ResNet DeepLab variant).
    Shape("os16-resnet-dense512-d2", "dense", "ResNet-101 block 4", (16,), 512, 512, 33, 3, 1, 2),
    Shape("os8-resnet-dense512-d4", "dense", "ResNet-101 block 4", (8,), 512, 512, 65, 3, 1, 4),
    _sep("os16-middle-sep728-728", "middle flow", (16,), 728, 728, 33),
    _sep("os8-middle-sep728-728-d2", "middle flow", (8,), 728, 728, 65, dilation=2),
    _sep("os16-exit-sep1536-2048-d2", "exit flow block 2", (16,), 1536, 2048, 33, dilation=2),
    _sep("os8-exit-sep1536-2048-d4", "exit flow block 2", (8,), 1536, 2048, 65, dilation=4),
    _sep("os16-aspp-sep2048-256-r12", "ASPP rate 12", (16,), 2048, 256, 33, dilation=12),
    _sep("os8-aspp-sep2048-256-r24", "ASPP rate 24", (8,), 2048, 256, 65, dilation=24),
    _sep("dec-sep304-256", "decoder", BOTH, 304, 256, 129),
    _sep("dec-sep256-256", "decoder", BOTH, 256, 256, 129),
)

# --quick: one layer of each kind that matters, batch 1 (about a minute on 2 cores).
QUICK_SHAPES = ("os16-middle-dw728", "os16-aspp-dw2048-r12", "dec-dw304", "os16-middle-pw728-728",
                "os16-aspp-pw2048-256", "os16-resnet-dense512-d2", "os16-middle-sep728-728")

# --tiny (hidden, for the tests): every op on a few planes, in well under a second.
TINY_SHAPES: tuple[Shape, ...] = (
    _dw("tiny-dw8-d2", "tiny", BOTH, 8, 9, dilation=2),
    _dw("tiny-dw8-s2", "tiny", BOTH, 8, 9, stride=2),
    _pw("tiny-pw8-6", "tiny", BOTH, 8, 6, 7),
    Shape("tiny-dense4-5-d2", "dense", "tiny", BOTH, 4, 5, 9, 3, 1, 2),
    _sep("tiny-sep8-6-d2", "tiny", BOTH, 8, 6, 9, dilation=2),
)

DEFAULT_LADDER_SHAPE = {"depthwise": "os16-middle-dw728", "pointwise": "os16-middle-pw728-728",
                        "dense": "os16-resnet-dense512-d2", "separable": "os16-middle-sep728-728"}


def select_cases(shapes: Sequence[Shape], ops: Iterable[str], patterns: Sequence[str] | None,
                 batches: Sequence[int]) -> list[Case]:
    """The cases to run, in the order of `shapes` then batch.

    A pattern is a shape name or glob ("os16-aspp-*"), run at every batch in `batches`, or a case
    name or glob with a batch suffix ("os16-middle-dw728-n4", "*-n8"), run at that batch only.
    """
    shapes = [s for s in shapes if s.op in set(ops)]
    if patterns is None:
        return [Case(s, b) for s in shapes for b in batches]
    chosen: set[tuple[str, int]] = set()
    for pattern in patterns:
        suffix = re.fullmatch(r"(.+)-n(\d+)", pattern)
        hits = {(s.name, b) for s in shapes if fnmatch.fnmatchcase(s.name, pattern) for b in batches}
        if suffix and int(suffix.group(2)) > 0:
            hits |= {(s.name, int(suffix.group(2))) for s in shapes
                     if fnmatch.fnmatchcase(s.name, suffix.group(1))}
        if not hits:
            raise BenchError(
                f"--shapes: {pattern!r} matches no shape of the selected ops "
                f"({', '.join(sorted(set(ops)))}); "
                "expected a name or glob from `python -m atrous bench --list`, optionally with a "
                "batch suffix such as -n8")
        chosen |= hits
    return [Case(s, b) for s in shapes for b in sorted({b for n, b in chosen if n == s.name})]


def select_models(registry: Mapping[str, Callable], patterns: Sequence[str]) -> list[str]:
    """The names matching each pattern (a name or a glob such as "deeplabv3plus_*"), in the given order."""
    chosen: list[str] = []
    for pattern in patterns:
        hits = [name for name in registry if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            raise BenchError(f"--models: {pattern!r} matches no model; expected comma-separated names or "
                             f"globs from {', '.join(registry)} (see `--models --list`)")
        chosen += [name for name in hits if name not in chosen]
    return chosen


# `python -m atrous demo` (the operator check of `make demo`): each op along the network, checked against
# F.conv2d. All but one come from SHAPES; the dense ASPP branch is the original DeepLabV3 ASPP's 3x3 at
# rate 12 (2048 -> 256), which the separable DeepLabV3+ ASPP replaces.
_BY_NAME = {s.name: s for s in SHAPES}
DEMO_SHAPES: tuple[Shape, ...] = (
    *(_BY_NAME[n] for n in ("os16-middle-dw728", "os16-middle-pw728-728", "os16-aspp-dw2048-r6",
                            "os16-aspp-dw2048-r12", "os16-aspp-dw2048-r18", "os16-aspp-pw2048-256")),
    Shape("os16-aspp-dense2048-256-r12", "dense", "ASPP dense rate 12", (16,), 2048, 256, 33, 3, 1, 12),
    _BY_NAME["dec-dw304"], _BY_NAME["dec-pw304-256"],
)
