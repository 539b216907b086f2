"""`python -m atrous bench`: times atrous's ops against PyTorch on DeepLabV3+ layer shapes (table, JSON, PNG).

How each number is made (read this before quoting one):

1. Warm-up. Every measured call runs `--warmup` times untimed first: the first call pays for
   thread-pool start-up, oneDNN primitive creation, allocator growth and cold pages.
2. Median. Then it runs up to `--repeats` times, each run timed on its own, stopping early once
   `--budget` seconds are spent and at least 3 runs are in. We report the median: one noisy run
   (another process, an interrupt) moves a mean but not a median. Rows whose runs spread by more
   than 25% (interquartile range over median) are marked "noisy". On the CPU a run is timed with
   `time.perf_counter` (CPU ops are synchronous); on CUDA with CUDA events, after writing a
   buffer larger than L2 (so each run starts with cold caches, as in a network where the previous
   layer evicted them); the same runs without that flush are reported as "hot".
3. Bandwidth. Once per run we time a large tensor copy (far larger than the last-level cache) and
   call 2 x bytes / time the machine's copy bandwidth: what a memory-bound kernel can hope for.
4. Roofline %. A depthwise convolution does 2.25 flop per byte in fp32, so it is memory-bound: its
   minimal traffic (read input + weights, write output; backward: read grad_output + input +
   weights, write grad_input + grad_weight) over its time is its achieved GB/s, printed as a % of
   the copy bandwidth. (A batch-1 layer at 33x33 moves a few MB, which fits in the last-level
   cache: there % of copy bandwidth can pass 100%.) GEMMs (pointwise, dense atrous) are
   compute-bound: we print GFLOP/s = 2*M*N*K / time instead (K = C_in*k*k for dense); on CUDA
   TFLOP/s, and "% torch", our throughput as a share of PyTorch's (cuBLAS/cuDNN) on the same
   layout. TF32 is switched off for the run, so float32 is compared with true float32.
5. Ratios. x = PyTorch time / our time, both medians from the same run (x > 1: ours is faster),
   against F.conv2d on the same layout (NCHW and channels_last are both timed) and against
   PyTorch's faster layout. Summaries are geometric means over shapes.
6. Correctness. Every timed output (and gradient) is compared with PyTorch's on the same layout;
   rows above `--tolerance` (largest error relative to the tensor's largest value) are marked.
7. Whole models (`--models`). DeepLabV3+ Xception-65 and DeepLabV3 MobileNetV3-Large by default
   (any of `atrous.models.MODELS`; 21 classes, output stride 16), batch 1 and 8 on a 513x513 input
   (`--quick`: 257x257, batch 1). Each model is built once with a fixed seed; both implementations
   run the same weights on the same input, `atrous.nn.set_impl(model, "torch")` switching every
   convolution to F.conv2d. `--steps` picks what is timed:
   - forward: eval mode under torch.no_grad;
   - train: train mode, forward + cross-entropy on random labels + backward + SGD step. Each impl
     steps its own copy of the model. Its first step is the one checked (with dropout off, so that
     no random mask enters the comparison), and it counts as the first warm-up;
   - fused: the `atrous.nn.fuse(model)` eval model (batch norms folded into the convolutions;
     under impl="atrous" separable blocks run the fused separable op), forward only.
   Reported: ms per image (median / batch), images/s and x = torch time / atrous time. Checked:
   the output (forward, fused) or the loss (train) within `--tolerance`, and the gradients of the
   checked step as ||g_atrous - g_torch|| / ||g_torch|| over all parameters. That bound is loose
   (0.1 in float32, 1e-6 in float64) on purpose: in train mode a randomly initialised 65-layer
   network amplifies float32 rounding, and PyTorch's own float32 gradients of Xception-65 differ
   from its float64 ones by about 1%. A broken kernel is off by order 1; the property tests check
   the backward kernels exactly. The default run takes 15-20 minutes on 2 cores and peaks near
   17 GB of memory, most of both in Xception-65's batch-8 training steps (about a minute each);
   `--steps forward,fused` or `--batch 1` leaves them out.

Backward timing: the forward graph is built once, untimed, and `torch.autograd.grad(...,
retain_graph=True)` is timed alone (input and weight gradients; DeepLab's convolutions have no
bias because batch norm follows them). The fused separable op is forward-only.

The ladder (`--ladder OP --shapes NAME`) times every rung of `atrous.ops.algorithms(OP, device)`
(each device has its own ladder) in teaching order, then "auto" and PyTorch, on one shape: what each step bought. A rung's run time is
first estimated on 1/16 of the channels; a rung estimated over `--rung-budget` seconds is skipped
(and reported with its estimate), the others get as many runs as fit in that budget.

From Python: `main(args, shapes=..., ops=..., models=...)` runs on your own shapes (a list of
`Shape`), with another ops module, or on your own models (a dict of name -> factory, called as
`factory(num_classes=21, output_stride=16)`); `resolve(args)` then `run(config)` return the report
as a dict.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime
import fnmatch
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

OPS = ("depthwise", "pointwise", "dense", "separable")
OP_FUNCTION = {"depthwise": "depthwise_conv2d", "pointwise": "pointwise_conv2d",
               "dense": "atrous_conv2d", "separable": "separable_conv2d"}
LAYOUTS = ("nchw", "channels_last")
LAYOUT_LABEL = {"nchw": "NCHW", "channels_last": "CL"}
DIRECTION_LABEL = {"forward": "fwd", "backward": "bwd"}
MEMORY_FORMAT = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
DTYPES = ("float32", "float64", "float16", "bfloat16")
TOLERANCE = {"float64": 1e-10, "float32": 1e-4, "float16": 1e-2, "bfloat16": 1e-2}
MIN_RUNS = 3  # a median needs a few runs; the time budget never cuts below this
NOISY_SPREAD = 0.25  # runs' interquartile range above 25% of the median: flag the row as noisy
# Batch 1 is inference, batch 8 training. Every shape exists at both (--batch 1,8), but the
# default run is batch 1 only: batch 8 multiplies the run time by about 6 on 2 cores.
DEFAULT_BATCHES, FULL_BATCHES = (1,), (1, 8)
DEFAULT_REPEATS, DEFAULT_BUDGET_S = 20, 0.5
QUICK_REPEATS, QUICK_BUDGET_S = 10, 0.25
PROBE_FRACTION = 16  # ladder: a rung's cost is estimated on 1/16 of the channels before a full run
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
# Model mode (--models): whole networks, impl="atrous" against impl="torch" (step 7 of the docstring).
DEFAULT_MODELS = ("deeplabv3plus_xception65", "deeplabv3_mobilenet_v3_large")
MODEL_STEPS = ("forward", "train", "fused")
MODEL_IMPLS = ("torch", "atrous")  # PyTorch first: its result is the reference
NUM_CLASSES, MODEL_OUTPUT_STRIDE = 21, 16  # PASCAL VOC, and the DeepLabV3+ paper's output stride
DEFAULT_MODEL_SIZE, QUICK_MODEL_SIZE, TINY_MODEL_SIZE = 513, 257, 33
DEFAULT_MODEL_BATCHES, QUICK_MODEL_BATCHES = (1, 8), (1,)
DEFAULT_MODEL_REPEATS, QUICK_MODEL_REPEATS = 5, 3  # a model run takes seconds: the budget stops at 3
GRAD_TOLERANCE = {"float64": 1e-6, "float32": 0.1, "float16": 0.5, "bfloat16": 0.5}  # see step 7
MODELS_README_START, MODELS_README_END = "<!-- bench-models:start -->", "<!-- bench-models:end -->"
EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2


class BenchError(ValueError):
    """A bad option or an impossible request; the message names the option and what it expects."""


# ============================================================================================
# Shapes: DeepLabV3+ Xception-65 at a 513x513 input
# ============================================================================================

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
        return (self.size + 2 * self.padding - self.dilation * (self.kernel - 1) - 1) // self.stride + 1

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


# ============================================================================================
# Timing (steps 1 and 2 of the docstring)
# ============================================================================================

@dataclass
class Measurement:
    """Times of the timed runs of one call, in milliseconds."""

    runs_ms: list[float]
    hot_runs_ms: list[float] | None = None  # CUDA: the same call without the L2 flush

    @property
    def median_ms(self) -> float:
        return statistics.median(self.runs_ms)

    @property
    def spread(self) -> float:
        """Interquartile range over the median: a few % on a quiet machine, much more on a busy one."""
        if len(self.runs_ms) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.runs_ms, n=4, method="inclusive")
        return (q3 - q1) / self.median_ms if self.median_ms > 0 else 0.0

    def to_json(self) -> dict:
        out = {"median": self.median_ms, "spread": self.spread, "runs": self.runs_ms}
        if self.hot_runs_ms:
            out |= {"hot_median": statistics.median(self.hot_runs_ms), "hot_runs": self.hot_runs_ms}
        return out


class CpuTimer:
    """Wall-clock time around each call: CPU kernels return only when their work is done."""

    flushes = False

    def time_ms(self, fn: Callable[[], Any], flush: bool = True) -> tuple[float, Any]:
        start = time.perf_counter()
        out = fn()
        return 1e3 * (time.perf_counter() - start), out


class CudaTimer:
    """CUDA events around each call (GPU time, not launch time), L2 flushed before cold runs."""

    flushes = True

    def __init__(self, device: torch.device):
        l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 64 << 20
        # Writing a buffer twice the L2 size evicts whatever the previous run left there.
        self._scrub = torch.empty(2 * l2 // 4, dtype=torch.float32, device=device)
        self.l2_bytes = l2

    def time_ms(self, fn: Callable[[], Any], flush: bool = True) -> tuple[float, Any]:
        if flush:
            self._scrub.fill_(1.0)  # queued before the start event, so not timed
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end), out


@dataclass(frozen=True)
class TimingPlan:
    warmup: int = 1
    repeats: int = 10
    budget_s: float = 1.0


def measure(fn: Callable[[], Any], timer: CpuTimer | CudaTimer, plan: TimingPlan) -> tuple[Measurement, Any]:
    """Warm up, then time runs of fn until `repeats` runs or the budget (but >= MIN_RUNS runs).

    Returns the measurement and fn's last result (which the caller checks for correctness).
    """
    out = None
    for _ in range(plan.warmup):  # step 1: warm-up, untimed
        out = fn()
    runs: list[float] = []
    started = time.perf_counter()
    while len(runs) < plan.repeats:  # step 2: timed runs; the median is taken later
        ms, out = timer.time_ms(fn)
        runs.append(ms)
        if len(runs) >= min(MIN_RUNS, plan.repeats) and time.perf_counter() - started >= plan.budget_s:
            break
    hot = [timer.time_ms(fn, flush=False)[0] for _ in runs] if timer.flushes else None
    return Measurement(runs, hot), out


def copy_bandwidth(device: torch.device, timer: CpuTimer | CudaTimer, nbytes: int) -> dict:
    """Step 3: the machine's copy bandwidth, 2 x bytes / median time of dst.copy_(src)."""
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    m, _ = measure(lambda: dst.copy_(src), timer, TimingPlan(warmup=2, repeats=10, budget_s=2.0))
    moved = 2 * src.numel() * 4  # read src + write dst
    return {"GBps": moved / (m.median_ms * 1e-3) / 1e9, "bytes_moved": moved, "median_ms": m.median_ms,
            "runs_ms": m.runs_ms}


# ============================================================================================
# What is timed: inputs, implementations, traffic and flop models
# ============================================================================================

@dataclass
class Tensors:
    """One case's tensors on one layout. Separable: w, b depthwise; w2, b2 pointwise."""

    x: torch.Tensor
    w: torch.Tensor
    b: torch.Tensor | None = None
    w2: torch.Tensor | None = None
    b2: torch.Tensor | None = None


def make_tensors(case: Case, dtype: torch.dtype, device: torch.device, layout: str,
                 seed: int = 0) -> Tensors:
    """Random inputs with fan-in-scaled weights (outputs of order 1), in `layout`.

    Drawn in float32 on the CPU with a fixed seed, so every device, dtype and layout sees the same
    numbers. Only separable convs get biases: the others are followed by batch norm in DeepLab.
    """
    s, gen = case.shape, torch.Generator().manual_seed(seed)

    def draw(*dims: int, scale: float = 1.0) -> torch.Tensor:
        t = torch.randn(*dims, generator=gen) * scale
        fmt = MEMORY_FORMAT[layout] if t.dim() == 4 else torch.contiguous_format
        return t.to(device=device, dtype=dtype).contiguous(memory_format=fmt)

    x = draw(case.batch, s.channels, s.size, s.size)
    k2 = s.kernel * s.kernel
    if s.op == "depthwise":
        return Tensors(x, draw(s.out_channels, 1, s.kernel, s.kernel, scale=k2 ** -0.5))
    if s.op in ("pointwise", "dense"):
        fan_in = s.channels * k2
        return Tensors(x, draw(s.out_channels, s.channels, s.kernel, s.kernel, scale=fan_in ** -0.5))
    return Tensors(x, draw(s.channels, 1, s.kernel, s.kernel, scale=k2 ** -0.5), draw(s.channels),
                   draw(s.out_channels, s.channels, 1, 1, scale=s.channels ** -0.5), draw(s.out_channels))


Impl = Callable[[torch.Tensor, torch.Tensor, Tensors], torch.Tensor]  # (x, w, rest) -> output


def implementations(shape: Shape, ops: Any, algo: str | None = None) -> dict[str, Impl]:
    """The contenders for one shape, PyTorch ("torch", the baseline) last.

    x and w are passed separately so the backward pass can differentiate with respect to them.
    `algo` picks one rung of our ladder (only when the build has rungs).
    """
    s, p, d = shape.stride, shape.padding, shape.dilation
    kw = {} if algo is None else {"algo": algo}
    if shape.op == "depthwise":
        return {"ours": lambda x, w, t: ops.depthwise_conv2d(x, w, None, s, p, d, **kw),
                "torch": lambda x, w, t: F.conv2d(x, w, None, s, p, d, x.shape[1])}
    if shape.op == "pointwise":
        return {"ours": lambda x, w, t: ops.pointwise_conv2d(x, w, None, **kw),
                "torch": lambda x, w, t: F.conv2d(x, w)}
    if shape.op == "dense":
        return {"ours": lambda x, w, t: ops.atrous_conv2d(x, w, None, s, p, d, **kw),
                "torch": lambda x, w, t: F.conv2d(x, w, None, s, p, d)}
    # separable: depthwise -> bias -> ReLU -> pointwise -> bias (batch norms folded into biases)
    return {
        "ours": lambda x, w, t: ops.separable_conv2d(x, w, t.b, t.w2, t.b2, s, p, d, activation="relu", **kw),
        "ours_unfused": lambda x, w, t: ops.pointwise_conv2d(
            ops.depthwise_conv2d(x, w, t.b, s, p, d).relu_(), t.w2, t.b2),
        "torch": lambda x, w, t: F.conv2d(F.conv2d(x, w, t.b, s, p, d, x.shape[1]).relu_(), t.w2, t.b2),
    }


def directions(op: str) -> tuple[str, ...]:
    return ("forward",) if op == "separable" else ("forward", "backward")


def work(case: Case, direction: str, itemsize: int) -> dict:
    """Minimal memory traffic (bytes) and arithmetic (flop) of one call; step 4 divides by time."""
    s, n = case.shape, case.batch
    x = n * s.channels * s.size * s.size
    out_plane = s.out_size * s.out_size
    if s.op == "depthwise":
        w, y = s.out_channels * s.kernel ** 2, n * s.out_channels * out_plane
        flops = 2 * y * s.kernel ** 2
        elems = x + w + y if direction == "forward" else y + x + w + x + w  # gy, x, w -> gx, gw
    elif s.op in ("pointwise", "dense"):
        w, y = s.out_channels * s.channels * s.kernel ** 2, n * s.out_channels * out_plane
        flops = 2 * y * s.channels * s.kernel ** 2  # 2*M*N*K: M = C_out, N = batch*H*W, K = C*k*k
        elems = x + w + y if direction == "forward" else y + x + w + x + w
    else:  # fused separable: the intermediate never has to leave the cache
        mid = n * s.channels * out_plane
        w = s.channels * s.kernel ** 2 + s.channels + s.out_channels * s.channels + s.out_channels
        flops = 2 * mid * s.kernel ** 2 + 2 * n * out_plane * s.out_channels * s.channels
        elems = x + w + n * s.out_channels * out_plane
    if direction == "backward":
        flops *= 2  # grad_input and grad_weight each cost one forward
    return {"bytes": elems * itemsize, "flops": flops, "memory_bound": s.op == "depthwise"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


TensorOrTensors = torch.Tensor | Sequence[torch.Tensor]


def rel_error(got: TensorOrTensors, want: TensorOrTensors) -> float | None:
    """Largest |got - want| relative to want's largest |value| (the worst over pairs of tensors).

    None when a shape differs or the error is not a finite number (NaN, inf): always a mismatch.
    """
    if isinstance(want, torch.Tensor):
        got, want = (got,), (want,)
    worst = 0.0
    for g, r in zip(got, want):
        g, r = g.detach().double().cpu(), r.detach().double().cpu()
        if g.shape != r.shape:
            return None
        scale = r.abs().max().item() if r.numel() else 0.0
        diff = (g - r).abs().max().item() if r.numel() else 0.0
        err = diff / scale if scale > 0 else diff
        if not math.isfinite(err):  # checked here: max() would quietly drop a NaN
            return None
        worst = max(worst, err)
    return worst


def _within(err: float | None, tolerance: float) -> bool:
    return err is not None and err <= tolerance


def _fmt_err(errs: Sequence[float | None]) -> str:
    if not errs:
        return "-"
    return "not finite" if None in errs else f"{max(errs):.1e}"


def _call(impl: Impl, t: Tensors, direction: str, gy: torch.Tensor | None) -> Callable[[], Any]:
    """A zero-argument callable running one direction of impl on t (graph built here, untimed)."""
    if direction == "forward":
        def forward():
            with torch.no_grad():
                return impl(t.x, t.w, t)
        return forward
    x, w = t.x.detach().requires_grad_(True), t.w.detach().requires_grad_(True)
    y = impl(x, w, t)
    grad = torch.ones_like(y) if gy is None else gy
    return lambda: torch.autograd.grad(y, (x, w), grad, retain_graph=True)


# ============================================================================================
# Running the cases
# ============================================================================================

@dataclass
class Config:
    device: torch.device
    dtype: torch.dtype
    ops: tuple[str, ...]
    cases: list[Case]
    plan: TimingPlan
    tolerance: float
    out: Path
    command: str
    update_readme: Path | None = None
    ladder: str | None = None
    rung_budget_s: float = 20.0
    copy_bytes: int = 256 << 20
    # Model mode (--models): the cases, what is timed, and the registry the names come from.
    model_cases: list[ModelCase] = dataclasses.field(default_factory=list)
    steps: tuple[str, ...] = MODEL_STEPS
    layout: str = "nchw"
    grad_tolerance: float = GRAD_TOLERANCE["float32"]
    factories: dict[str, Callable[..., Any]] = dataclasses.field(default_factory=dict)


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den else None


def run_case(case: Case, cfg: Config, timer: CpuTimer | CudaTimer, copy_gbps: float, ops: Any) -> dict:
    """Times every contender on both layouts, both directions; returns the case's JSON record."""
    s = case.shape
    impls = implementations(s, ops)
    record: dict[str, Any] = {
        "name": case.name, "shape": s.name, "op": s.op, "where": s.where, "batch": case.batch,
        "output_strides": list(s.output_strides),
        "geometry": {"N": case.batch, "C": s.channels, "H": s.size, "W": s.size, "C_out": s.out_channels,
                     "H_out": s.out_size, "W_out": s.out_size, "kernel": s.kernel, "stride": s.stride,
                     "padding": s.padding, "dilation": s.dilation},
        "directions": {},
    }
    itemsize = torch.empty((), dtype=cfg.dtype).element_size()
    for direction in directions(s.op):
        rec = work(case, direction, itemsize)
        rec |= {"timings_ms": {i: {} for i in impls}, "max_rel_err": {i: {} for i in impls if i != "torch"}}
        record["directions"][direction] = rec
    for layout in LAYOUTS:
        t = make_tensors(case, cfg.dtype, cfg.device, layout)
        for direction in directions(s.op):
            rec = record["directions"][direction]
            gy = None
            if direction == "backward":
                gy_shape = (case.batch, s.out_channels, s.out_size, s.out_size)
                gy = torch.randn(gy_shape, generator=torch.Generator().manual_seed(1)).to(
                    device=cfg.device, dtype=cfg.dtype).contiguous(memory_format=MEMORY_FORMAT[layout])
            results = {}
            # PyTorch first: its result is the reference the others are checked against.
            for name in ["torch"] + [i for i in impls if i != "torch"]:
                try:
                    m, out = measure(_call(impls[name], t, direction, gy), timer, cfg.plan)
                    rec["timings_ms"][name][layout] = m.to_json()
                    results[name] = out
                except Exception as exc:  # a failing contender is reported, the run goes on
                    rec["timings_ms"][name][layout] = {"error": _first_line(exc)}
            for name in rec["max_rel_err"]:
                if name in results and "torch" in results:
                    rec["max_rel_err"][name][layout] = rel_error(results[name], results["torch"])
            del results
    for rec in record["directions"].values():
        _derive(rec, copy_gbps, cfg.tolerance)
    record["ok"] = all(rec["ok"] for rec in record["directions"].values())
    return record


def _derive(rec: dict, copy_gbps: float, tolerance: float) -> None:
    """Adds ratios (step 5) and throughputs (step 4) to a direction record, from its medians."""
    med = {i: {lay: v.get("median") for lay, v in by_layout.items()}
           for i, by_layout in rec["timings_ms"].items()}
    torch_ms = {lay: v for lay, v in med["torch"].items() if v}
    best_layout = min(torch_ms, key=torch_ms.get) if torch_ms else None
    torch_best = torch_ms.get(best_layout)
    rec["torch_best_layout"] = best_layout
    rec["speedup"], rec["speedup_vs_torch_best"] = {}, {}
    for name in (i for i in med if i != "torch"):
        ours = {lay: v for lay, v in med[name].items() if v}
        rec["speedup"][name] = {lay: _ratio(med["torch"].get(lay), v) for lay, v in ours.items()}
        vs_best = {lay: _ratio(torch_best, v) for lay, v in ours.items()}
        vs_best["best"] = _ratio(torch_best, min(ours.values())) if ours else None
        rec["speedup_vs_torch_best"][name] = vs_best
    if "ours_unfused" in med:  # what fusing bought, on the same layout
        rec["speedup_vs_unfused"] = {lay: _ratio(med["ours_unfused"].get(lay), v)
                                     for lay, v in med["ours"].items() if v}
    for key, amount in (("GBps", rec["bytes"]), ("GFLOPs", rec["flops"])):  # per second, in units of 1e9
        rec[key] = {i: {lay: amount / (v * 1e-3) / 1e9 for lay, v in m.items() if v} for i, m in med.items()}
    if rec["memory_bound"] and copy_gbps:
        rec["pct_copy"] = {i: {lay: 100 * g / copy_gbps for lay, g in m.items()}
                           for i, m in rec["GBps"].items()}
    if not rec["memory_bound"]:  # GEMMs: our throughput as a % of PyTorch's on the same layout
        rec["pct_torch"] = {i: {lay: 100 * g / rec["GFLOPs"]["torch"][lay] for lay, g in m.items()
                                if rec["GFLOPs"]["torch"].get(lay)}
                            for i, m in rec["GFLOPs"].items() if i != "torch"}
    errors = [v["error"] for m in rec["timings_ms"].values() for v in m.values() if "error" in v]
    mismatches = [e for m in rec["max_rel_err"].values() for e in m.values() if not _within(e, tolerance)]
    rec["check"] = "ERROR" if errors else "MISMATCH" if mismatches else "ok"
    rec["ok"] = rec["check"] == "ok"
    rec["noisy"] = [f"{i}/{lay}" for i, m in rec["timings_ms"].items() for lay, v in m.items()
                    if v.get("spread", 0) > NOISY_SPREAD]


# ============================================================================================
# Summaries: the targets of the issue, as geometric means over cases
# ============================================================================================

def geomean(values: Iterable[float]) -> float | None:
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _pairs(results: list[dict], op: str, direction: str, key: str, impl: str | None = "ours",
           layouts: Sequence[str] = LAYOUTS) -> list[tuple[float, str, str]]:
    """(ratio, case, layout) from ok records of op, for rec[key][impl][layout] (rec[key][layout] when
    impl is None: ratios of ours against ours, such as speedup_vs_unfused)."""
    out = []
    for r in results:
        rec = r.get("directions", {}).get(direction)
        if r["op"] != op or not rec or not rec["ok"]:
            continue
        for lay in layouts:
            by_layout = rec.get(key, {}) if impl is None else rec.get(key, {}).get(impl, {})
            v = by_layout.get(lay)
            if v:
                out.append((v, r["name"], lay))
    return out


def summarize(results: list[dict]) -> list[dict]:
    """The summary lines, each {key, label, values: {name: geomean}, count, min?}; from records only,
    so a saved bench.json can be re-summarized."""
    lines = []

    def line(key: str, label: str, op: str, direction: str, ratio_key: str, columns: dict[str, Sequence[str]],
             impl: str | None = "ours", with_min: bool = False) -> None:
        layouts = sorted({lay for lays in columns.values() for lay in lays})
        all_pairs = _pairs(results, op, direction, ratio_key, impl, layouts)
        entry: dict[str, Any] = {
            "key": key, "label": label, "op": op, "count": len({case for _, case, _ in all_pairs}),
            "values": {name: geomean(v for v, _, lay in all_pairs if lay in lays)
                       for name, lays in columns.items()},
        }
        if with_min and all_pairs:
            v, case, lay = min(all_pairs)
            entry["min"] = {"value": v, "case": case, "layout": lay}
        lines.append(entry)

    same = {"NCHW": ("nchw",), "CL": ("channels_last",), "all": LAYOUTS}
    line("depthwise_forward_same_layout", "depthwise forward vs PyTorch, same layout", "depthwise", "forward",
         "speedup", same, with_min=True)
    vs_best = {"ours NCHW": ("nchw",), "ours CL": ("channels_last",), "ours best": ("best",)}
    line("depthwise_forward_vs_torch_best", "depthwise forward vs PyTorch's best layout", "depthwise",
         "forward", "speedup_vs_torch_best", vs_best)
    line("depthwise_backward_same_layout", "depthwise backward (input+weight) vs PyTorch, same layout",
         "depthwise", "backward", "speedup", same, with_min=True)
    for op, label in (("pointwise", "pointwise GEMM"), ("dense", "dense atrous GEMM")):
        for direction in ("forward", "backward"):
            line(f"{op}_{direction}_throughput", f"{label} {direction} GFLOP/s, ours / PyTorch, same layout",
                 op, direction, "speedup", same)
    line("separable_forward_vs_torch_best", "fused separable forward vs PyTorch's two convs, its best layout",
         "separable", "forward", "speedup_vs_torch_best", vs_best)
    line("separable_forward_vs_unfused", "fused separable forward vs our two unfused ops, same layout",
         "separable", "forward", "speedup_vs_unfused", same, impl=None)
    return lines


def noise_lines(report: dict) -> list[str]:
    """A warning when many measurements were noisy: then only ratios far from 1x mean anything."""
    spreads = [v["spread"] for r in report["results"] for rec in r.get("directions", {}).values()
               for m in rec["timings_ms"].values() for v in m.values() if "spread" in v]
    noisy = sum(s > NOISY_SPREAD for s in spreads)
    if not noisy:
        return []
    return [f"  noise: {noisy} of {len(spreads)} measurements had runs spread by more than "
            f"{NOISY_SPREAD:.0%} of their median (rows marked 'noisy'); was the machine busy?"]


def format_summary(report: dict) -> list[str]:
    """The summary as text, for the ops that were run (an op with no usable rows shows n/a)."""
    out = []
    skipped = {r["op"]: r["skipped"] for r in report["results"] if r.get("skipped")}
    for entry in (e for e in report["summary"] if e["op"] in report["settings"]["ops"]):
        if not entry["count"]:
            reason = skipped.get(entry["op"], "no rows measured and correct")
            out.append(f"  {entry['label']:<66} n/a ({reason})")
            continue
        values = "  ".join(f"{k} {_x(v)}" for k, v in entry["values"].items() if v)
        if "min" in entry:
            m = entry["min"]
            values += f"  min {_x(m['value'])} ({m['case']}, {LAYOUT_LABEL[m['layout']]})"
        count = f"{entry['count']} case{'s' if entry['count'] > 1 else ''}"
        out.append(f"  {entry['label']:<66} {values}  [{count}]")
    return out


# ============================================================================================
# Output: tables (text and markdown), JSON, chart, README block
# ============================================================================================

def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _num(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


@dataclass
class Table:
    """Rows of strings; numbers right-aligned, the first `left` columns and the last (check or note)
    left-aligned; as fixed-width text or a markdown table."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    left: int = 1  # how many leading columns are left-aligned

    def _left(self, column: int) -> bool:
        return column < self.left or column == len(self.headers) - 1

    def text(self) -> str:
        widths = [max(len(c) for c in col) for col in zip(self.headers, *self.rows)]

        def fmt(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) if self._left(i) else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        head = fmt(self.headers)
        return "\n".join([self.title, head, "-" * len(head)] + [fmt(r) for r in self.rows])

    def markdown(self) -> str:
        align = ["---" if self._left(i) else "---:" for i in range(len(self.headers))]
        rows = [self.headers, align] + self.rows
        return f"**{self.title}**\n\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows)


def _best(values: dict[str, float] | None) -> float | None:
    values = {k: v for k, v in (values or {}).items() if v}
    return max(values.values()) if values else None


def result_tables(report: dict) -> list[Table]:
    """One table per op (columns differ: GB/s for depthwise, GFLOP/s for GEMMs, unfused for separable)."""
    cuda = report["machine"]["device"].startswith("cuda")
    tables = []
    for op in OPS:
        records = [r for r in report["results"] if r["op"] == op and not r.get("skipped")]
        if not records:
            continue
        impls = ["ours", "ours_unfused", "torch"] if op == "separable" else ["ours", "torch"]
        label = {"ours": "ours", "ours_unfused": "unfused", "torch": "torch"}
        headers = ["case", "input", "dir"]
        headers += [f"{label[i]} {LAYOUT_LABEL[lay]}" for lay in LAYOUTS for i in impls]
        headers += [f"x {LAYOUT_LABEL[lay]}" for lay in LAYOUTS] + ["x best"]
        if op == "separable":
            headers += ["x unfused"]
        if op == "depthwise":
            headers += ["ours GB/s", "%copy"]
        elif cuda:  # GPU GEMMs run at TFLOP/s; "% torch" is ours as a share of PyTorch's (cuBLAS/cuDNN)
            headers += ["ours TFLOP/s", "torch TFLOP/s", "% torch"]
        else:
            headers += ["ours GFLOP/s", "torch GFLOP/s"]
        if cuda:
            headers += ["ours hot", "torch hot"]
        headers += ["max err", "check"]
        rows = []
        for r in records:
            for direction, rec in r["directions"].items():
                med = {i: {lay: v.get("median") for lay, v in rec["timings_ms"][i].items()} for i in impls}
                row = [r["name"], r["geometry_text"], DIRECTION_LABEL[direction]]
                row += [_ms(med[i].get(lay)) for lay in LAYOUTS for i in impls]
                row += [_x(rec["speedup"]["ours"].get(lay)) for lay in LAYOUTS]
                row += [_x(rec["speedup_vs_torch_best"]["ours"].get("best"))]
                if op == "separable":
                    row += [_x(_ratio(min(filter(None, med["ours_unfused"].values()), default=None),
                                      min(filter(None, med["ours"].values()), default=None)))]
                if op == "depthwise":
                    pct = _best(rec.get("pct_copy", {}).get("ours"))
                    row += [_num(_best(rec["GBps"]["ours"])), _num(pct, ".0f")]
                elif cuda:
                    ours, theirs = _best(rec["GFLOPs"]["ours"]), _best(rec["GFLOPs"]["torch"])
                    row += [_num(ours and ours / 1e3, ".2f"), _num(theirs and theirs / 1e3, ".2f"),
                            _num(_ratio(ours, theirs) and 100 * _ratio(ours, theirs), ".0f")]
                else:
                    row += [_num(_best(rec["GFLOPs"]["ours"])), _num(_best(rec["GFLOPs"]["torch"]))]
                if cuda:
                    hot = {i: min((v["hot_median"] for v in rec["timings_ms"][i].values()
                                   if "hot_median" in v), default=None) for i in ("ours", "torch")}
                    row += [_ms(hot["ours"]), _ms(hot["torch"])]
                errs = [e for m in rec["max_rel_err"].values() for e in m.values()]
                check = rec["check"] + (" noisy" if rec["noisy"] else "")
                row += [_fmt_err(errs), check]
                rows.append(row)
        title = {"depthwise": "depthwise (memory-bound: GB/s and % of copy bandwidth at ours' faster layout)",
                 "pointwise": "pointwise 1x1 (GEMM)", "dense": "dense atrous 3x3 (im2col + GEMM)",
                 "separable": "separable forward: fused vs our two ops vs PyTorch's two convs (+ReLU)"}[op]
        tables.append(Table(title, headers, rows, left=3))
    return tables


def _header_lines(report: dict) -> list[str]:
    m, s = report["machine"], report["settings"]
    bw = m["copy_bandwidth"]["GBps"]
    return [
        f"atrous bench: {m['device_name']}, {m['threads']} threads, torch {m['torch']}, {s['dtype']}; "
        f"copy bandwidth {bw:.1f} GB/s",
        f"times: median ms of up to {s['repeats']} runs after {s['warmup']} warm-up "
        f"({s['timer']}); x = PyTorch time / our time (> 1x: ours faster); "
        f"x best = PyTorch's faster layout vs ours' faster layout",
    ]


def format_report(report: dict) -> str:
    parts = ["\n".join(_header_lines(report))]
    parts += [t.text() for t in result_tables(report)]
    skipped = [f"  {r['name']}: {r['skipped']}" for r in report["results"] if r.get("skipped")]
    if skipped:
        parts.append("skipped\n" + "\n".join(skipped))
    parts.append("summary (geometric means over cases; x = PyTorch time / our time)\n"
                 + "\n".join(format_summary(report) + noise_lines(report)))
    return "\n\n".join(parts)


def markdown_report(report: dict) -> str:
    """The README block: command, machine, summary, then every table folded away."""
    lines = [f"Regenerate with `{report['command']}` "
             f"(the JSON and chart go to `{report['settings']['out']}/`).", ""]
    lines += [f"{line}  " for line in _header_lines(report)]  # two spaces: a markdown line break
    lines += ["", "```", "summary (geometric means over cases; x = PyTorch time / our time)"]
    lines += format_summary(report) + noise_lines(report)
    lines += ["```", "", "<details><summary>every shape</summary>", ""]
    for table in result_tables(report):
        lines += [table.markdown(), ""]
    lines += [f"Skipped {r['name']}: {r['skipped']}.  " for r in report["results"] if r.get("skipped")]
    lines.append("</details>")
    return "\n".join(lines)


def update_readme(path: Path, block: str, start: str = README_START, end: str = README_END) -> None:
    """Replaces what lies between the README's bench markers with `block`; nothing else changes."""
    text = path.read_text()
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise BenchError(f"--update-readme {path}: expected one '{start}' line followed by one "
                         f"'{end}' line; add them where the table belongs")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    path.write_text(f"{head}{start}\n{block.strip()}\n{end}{tail}")


def _figure(height: float, ncols: int = 1, nrows: int = 1, **kw):
    from matplotlib.figure import Figure  # imported here: only the chart needs matplotlib

    fig = Figure(figsize=(11, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def plot_results(report: dict, path: Path) -> Path:
    """Bars of x = PyTorch time / our time per case, growing from the 1x line (log scale): right of
    it ours is faster, left of it PyTorch is."""
    series = [("forward", "nchw", "#1f77b4"), ("forward", "channels_last", "#aec7e8"),
              ("backward", "nchw", "#d62728"), ("backward", "channels_last", "#ff9896")]
    by_op = [(op, [r for r in report["results"] if r["op"] == op and r.get("directions")]) for op in OPS]
    by_op = [(op, rs) for op, rs in by_op if rs] or [("nothing measured", [])]
    heights = [max(1, len(rs)) for _, rs in by_op]
    fig, axes = _figure(1.2 + 0.45 * sum(heights), nrows=len(heights), sharex=True,
                        gridspec_kw={"height_ratios": heights})
    for ax, (op, records) in zip(axes[:, 0], by_op):
        bar = 0.8 / len(series)
        for k, (direction, layout, color) in enumerate(series):
            ys, xs = [], []
            for j, r in enumerate(records):
                v = r["directions"].get(direction, {}).get("speedup", {}).get("ours", {}).get(layout)
                if v:
                    ys.append(j - 0.4 + (k + 0.5) * bar)
                    xs.append(v)
            ax.barh(ys, [v - 1 for v in xs], left=1, height=bar, color=color,
                    label=f"{direction} {LAYOUT_LABEL[layout]}")
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xscale("log")
        ax.set_yticks(range(len(records)), [r["name"] for r in records], fontsize=7)
        ax.set_ylim(len(records) - 0.5, -0.5)  # first case on top
        ax.set_title(op, fontsize=9, loc="left")
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[-1, 0].set_xlabel("PyTorch time / our time on the same layout (log scale; > 1: ours faster)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", ncols=4, fontsize=8)
    m = report["machine"]
    fig.suptitle(f"atrous bench: {m['device_name']}, {report['settings']['dtype']}", fontsize=10,
                 x=0.02, ha="left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


# ============================================================================================
# The ladder: every rung of one op on one shape (what each teaching step bought)
# ============================================================================================

def _sliced(case: Case, t: Tensors, c: int, layout: str) -> tuple[Case, Tensors]:
    """The same problem on the first c channels (depthwise, separable) or output channels (GEMMs):
    cost scales about linearly with them, so a probe run predicts the full run."""
    s = case.shape
    fmt = MEMORY_FORMAT[layout]

    def cut(v: torch.Tensor | None, *index) -> torch.Tensor | None:
        if v is None:
            return None
        v = v[index]
        return v.contiguous(memory_format=fmt) if v.dim() == 4 else v.contiguous()

    every = slice(None)
    if s.op in ("depthwise", "separable"):
        shape = dataclasses.replace(s, channels=c, out_channels=c if s.op == "depthwise" else s.out_channels)
        return Case(shape, case.batch), Tensors(cut(t.x, every, slice(c)), cut(t.w, slice(c)),
                                                cut(t.b, slice(c)), cut(t.w2, every, slice(c)), t.b2)
    shape = dataclasses.replace(s, out_channels=c)
    return Case(shape, case.batch), Tensors(t.x, cut(t.w, slice(c)), cut(t.b, slice(c)))


def _budgeted(case: Case, t: Tensors, impl_for: Callable[[Shape], Impl], direction: str, gy, layout: str,
              cfg: Config, timer: CpuTimer | CudaTimer) -> tuple[Measurement | None, Any, str | None]:
    """Probe on 1/PROBE_FRACTION of the channels; skip when the full run would exceed the rung
    budget, else cap the repeats so the rung fits in it."""
    full = case.shape.channels if case.shape.op in ("depthwise", "separable") else case.shape.out_channels
    c = max(1, full // PROBE_FRACTION)
    estimate = 0.0
    if c < full:
        probe_case, probe_t = _sliced(case, t, c, layout)
        call = _call(impl_for(probe_case.shape), probe_t, direction, None)

        def probe() -> float:
            sync = torch.cuda.synchronize if t.x.is_cuda else (lambda: None)  # GPU work is asynchronous
            sync()
            started = time.perf_counter()
            call()
            sync()
            return (time.perf_counter() - started) * full / c

        estimate = probe()
        if estimate > cfg.rung_budget_s:  # the first call may have paid one-time set-up: ask again
            estimate = probe()
    if estimate > cfg.rung_budget_s:
        return None, None, (f"skipped: about {estimate:.3g} s per run (estimated on {c}/{full} channels), "
                            f"over --rung-budget {cfg.rung_budget_s:g} s")
    fits = int(cfg.rung_budget_s / estimate) - cfg.plan.warmup if estimate else cfg.plan.repeats
    plan = dataclasses.replace(cfg.plan, repeats=max(1, min(cfg.plan.repeats, fits)))
    m, out = measure(_call(impl_for(case.shape), t, direction, gy), timer, plan)
    return m, out, None


def ladder_rungs(ops: Any, fname: str, device: torch.device) -> tuple:
    """The rungs of op `fname` on `device`: each device has its own ladder."""
    if device.type == "cpu":
        return tuple(ops.algorithms(fname))
    return tuple(ops.algorithms(fname, device.type))


def run_ladder(case: Case, cfg: Config, timer: CpuTimer | CudaTimer, copy_gbps: float, ops: Any) -> dict:
    """Times every rung (then "auto" and PyTorch) of the op on both layouts, both directions."""
    fname = OP_FUNCTION[case.shape.op]
    rungs = [*ladder_rungs(ops, fname, cfg.device), "auto"]
    itemsize = torch.empty((), dtype=cfg.dtype).element_size()
    rows = []
    for layout in LAYOUTS:
        t = make_tensors(case, cfg.dtype, cfg.device, layout)
        for direction in directions(case.shape.op):
            gy = None
            if direction == "backward":
                s = case.shape
                gy = torch.randn(case.batch, s.out_channels, s.out_size, s.out_size,
                                 generator=torch.Generator().manual_seed(1)).to(
                    device=cfg.device, dtype=cfg.dtype).contiguous(memory_format=MEMORY_FORMAT[layout])
            w = work(case, direction, itemsize)
            reference = None
            entries = [("torch", None)] + [(r, r) for r in rungs]  # PyTorch first: the reference
            for label, algo in entries:
                impl_name = "torch" if algo is None else "ours"

                def impl_for(shape: Shape, algo=algo, impl_name=impl_name) -> Impl:
                    return implementations(shape, ops, algo)[impl_name]

                row: dict[str, Any] = {"rung": label, "layout": layout, "direction": direction}
                try:
                    if label == "torch":  # the reference is never skipped
                        m, out = measure(_call(impl_for(case.shape), t, direction, gy), timer, cfg.plan)
                        skipped = None
                    else:
                        m, out, skipped = _budgeted(case, t, impl_for, direction, gy, layout, cfg, timer)
                except Exception as exc:
                    m, out, skipped = None, None, None
                    row["error"] = _first_line(exc)
                if skipped:
                    row["skipped"] = skipped
                if m is not None:
                    row["timing_ms"] = m.to_json()
                    row["GBps"] = w["bytes"] / (m.median_ms * 1e-3) / 1e9
                    row["GFLOPs"] = w["flops"] / (m.median_ms * 1e-3) / 1e9
                    if w["memory_bound"] and copy_gbps:
                        row["pct_copy"] = 100 * row["GBps"] / copy_gbps
                    if label == "torch":
                        reference = out
                    elif reference is not None:
                        row["max_rel_err"] = rel_error(out, reference)
                        row["ok"] = _within(row["max_rel_err"], cfg.tolerance)
                rows.append(row)
    _ladder_ratios(rows)
    return {"op": fname, "case": case.name, "rungs": rungs, "rows": rows}


def _ladder_ratios(rows: list[dict]) -> None:
    """x prev (what this step bought), x first and x torch, per layout and direction, from medians."""
    for key in {(r["layout"], r["direction"]) for r in rows}:
        group = [r for r in rows if (r["layout"], r["direction"]) == key]
        med = {r["rung"]: r.get("timing_ms", {}).get("median") for r in group}
        ours = [r for r in group if r["rung"] != "torch"]
        first = next((med[r["rung"]] for r in ours if med[r["rung"]]), None)
        prev = None
        for r in ours:
            t = med[r["rung"]]
            r["x_prev"] = _ratio(prev, t) if r["rung"] != "auto" else None
            r["x_first"] = _ratio(first, t)
            r["x_torch"] = _ratio(med.get("torch"), t)
            if t and r["rung"] != "auto":
                prev = t


def format_ladder(ladder: dict, report: dict) -> str:
    headers = ["rung", "layout", "dir", "ms", "x prev", "x first", "x torch", "GB/s", "%copy", "GFLOP/s",
               "max err", "note"]
    rows = []
    for r in ladder["rows"]:
        ms = r.get("timing_ms", {})
        note = r.get("skipped") or r.get("error") or ("" if r.get("ok", True) else "MISMATCH")
        if ms and len(ms["runs"]) < MIN_RUNS:
            note = (note + f" {len(ms['runs'])} run(s), capped by --rung-budget").strip()
        rows.append([r["rung"], LAYOUT_LABEL[r["layout"]], DIRECTION_LABEL[r["direction"]],
                     _ms(ms.get("median")), _x(r.get("x_prev")), _x(r.get("x_first")), _x(r.get("x_torch")),
                     _num(r.get("GBps")), _num(r.get("pct_copy"), ".0f"), _num(r.get("GFLOPs")),
                     _fmt_err([r["max_rel_err"]]) if "max_rel_err" in r else "-", note])
    title = (f"ladder of {ladder['op']} on {ladder['case']} (x prev: what the step bought; "
             f"x torch: PyTorch on the same layout / this rung)")
    return "\n".join(_header_lines(report)) + "\n\n" + Table(title, headers, rows, left=3).text()


def plot_ladder(ladder: dict, path: Path) -> Path:
    """Median time per rung (log scale), one panel per direction, bars per layout."""
    dirs = sorted({r["direction"] for r in ladder["rows"]}, reverse=True)  # forward, backward
    fig, axes = _figure(1.5 + 0.35 * len(ladder["rungs"]) * len(dirs), nrows=len(dirs))
    labels = ["torch", *ladder["rungs"]]
    for ax, direction in zip(axes[:, 0], dirs):
        for k, (layout, color) in enumerate((("nchw", "#1f77b4"), ("channels_last", "#ff7f0e"))):
            ys, xs = [], []
            for j, label in enumerate(labels):
                row = next((r for r in ladder["rows"] if (r["rung"], r["layout"], r["direction"])
                            == (label, layout, direction)), {})
                if "timing_ms" in row:
                    ys.append(j - 0.2 + 0.4 * k)
                    xs.append(row["timing_ms"]["median"])
            ax.barh(ys, xs, height=0.4, color=color, label=LAYOUT_LABEL[layout])
        ax.set_xscale("log")
        ax.set_yticks(range(len(labels)), ["PyTorch" if lab == "torch" else lab for lab in labels])
        ax.invert_yaxis()
        ax.set_xlabel("median ms (log scale; missing bar: skipped)")
        ax.set_title(f"{ladder['op']} {direction}, {ladder['case']}", fontsize=9)
        ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


# ============================================================================================
# Whole models: impl="atrous" against impl="torch" on the same weights (step 7 of the docstring)
# ============================================================================================

def model_registry() -> dict[str, Callable[..., Any]]:
    """atrous.models.MODELS: name -> factory(num_classes=..., output_stride=...)."""
    from .models import MODELS

    return dict(MODELS)


def select_models(registry: dict[str, Callable[..., Any]], patterns: Sequence[str]) -> list[str]:
    """The names matching each pattern (a name or a glob such as "deeplabv3plus_*"), in the given order."""
    chosen: list[str] = []
    for pattern in patterns:
        hits = [name for name in registry if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            raise BenchError(f"--models: {pattern!r} matches no model; expected comma-separated names or "
                             f"globs from {', '.join(registry)} (see `--models --list`)")
        chosen += [name for name in hits if name not in chosen]
    return chosen


def build_model(factory: Callable[..., Any], cfg: Config) -> torch.nn.Module:
    """The model both implementations share: a fixed seed, so every run times the same weights."""
    torch.manual_seed(0)
    model = factory(num_classes=NUM_CLASSES, output_stride=MODEL_OUTPUT_STRIDE)
    return model.to(device=cfg.device, dtype=cfg.dtype, memory_format=MEMORY_FORMAT[cfg.layout]).eval()


def _logits(out: Any) -> torch.Tensor:
    return out["out"] if isinstance(out, dict) else out  # models built with aux=True return a dict


def _no_grad_forward(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def forward() -> torch.Tensor:
        with torch.no_grad():
            return _logits(model(x))
    return forward


def _training_step(model: torch.nn.Module, impl: str, x: torch.Tensor,
                   labels: torch.Tensor) -> tuple[Callable[[], torch.Tensor], torch.Tensor, torch.Tensor]:
    """A training step on impl's own copy of the model; returns (step, loss, gradients) where loss
    and the flattened gradients come from a first step (the one that is checked)."""
    from .nn import set_impl

    net = set_impl(copy.deepcopy(model).train(), impl)  # same starting weights for both impls
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(_logits(net(x)), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    # The checked step runs without dropout: its random mask follows the memory layout of the tensor it
    # drops, which can differ between the impls (channels_last), so even a shared seed would not align it.
    dropouts = [m for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    for m in dropouts:
        m.eval()
    loss = step()
    for m in dropouts:
        m.train()
    grads = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    return step, loss, grads


def norm_rel_error(got: torch.Tensor, want: torch.Tensor) -> float | None:
    """||got - want|| / ||want|| (None when not a finite number): the error of a whole gradient."""
    diff = torch.linalg.vector_norm((got - want).double()).item()
    scale = torch.linalg.vector_norm(want.double()).item()
    err = diff / scale if scale > 0 else diff
    return err if math.isfinite(err) else None


def run_model_case(case: ModelCase, model: torch.nn.Module, fused: torch.nn.Module | None, cfg: Config,
                   timer: CpuTimer | CudaTimer, echo: Callable[[str], None] = print) -> dict:
    """Times every step of one model case under both impls; returns the case's JSON record."""
    from .nn import set_impl

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(case.batch, 3, case.size, case.size, generator=gen).to(
        device=cfg.device, dtype=cfg.dtype).contiguous(memory_format=MEMORY_FORMAT[cfg.layout])
    labels = torch.randint(0, NUM_CLASSES, (case.batch, case.size, case.size), generator=gen).to(cfg.device)
    record: dict[str, Any] = {"name": case.name, "model": case.model, "batch": case.batch, "size": case.size,
                              "input": case.input_dims, "layout": cfg.layout,
                              "params": sum(p.numel() for p in model.parameters()), "steps": {}}
    for step in cfg.steps:
        started = time.perf_counter()
        rec: dict[str, Any] = {"timings_ms": {}}
        results: dict[str, Any] = {}  # impl -> output (forward, fused) or (loss, gradients) (train)
        for impl in MODEL_IMPLS:
            try:
                if step == "train":
                    call, loss, grads = _training_step(model, impl, x, labels)
                    plan = dataclasses.replace(cfg.plan, warmup=max(0, cfg.plan.warmup - 1))
                    m, _ = measure(call, timer, plan)
                    results[impl] = (loss, grads)
                    del call  # frees this impl's copy of the model before the next one is made
                else:
                    net = set_impl(fused if step == "fused" else model, impl)
                    m, results[impl] = measure(_no_grad_forward(net, x), timer, cfg.plan)
                rec["timings_ms"][impl] = m.to_json()
            except Exception as exc:  # a failing impl is reported, the run goes on
                rec["timings_ms"][impl] = {"error": _first_line(exc)}
        if len(results) == len(MODEL_IMPLS):
            if step == "train":
                rec["max_rel_err"] = rel_error(results["atrous"][0], results["torch"][0])  # the loss
                rec["grad_rel_err"] = norm_rel_error(results["atrous"][1], results["torch"][1])
            else:
                rec["max_rel_err"] = rel_error(results["atrous"], results["torch"])
        del results
        _derive_model_step(rec, step, case.batch, cfg)
        record["steps"][step] = rec
        echo(f"  {case.name:<44} {step:<8} {time.perf_counter() - started:6.1f} s  ms/image atrous "
             f"{_ms(rec['ms_per_image'].get('atrous'))} torch {_ms(rec['ms_per_image'].get('torch'))}  "
             f"x {_x(rec['speedup'])}  check {rec['check']}")
    if fused is not None:
        blocks = [m for m in fused.modules() if hasattr(m, "fused_op")]
        record["fused_separable_blocks"] = {"fused_op": sum(bool(m.fused_op) for m in blocks),
                                            "separable": len(blocks)}
    record["ok"] = all(rec["ok"] for rec in record["steps"].values())
    return record


def _derive_model_step(rec: dict, step: str, batch: int, cfg: Config) -> None:
    """Per-image times, images/s, the ratio and the check of one step record, from its medians."""
    med = {impl: v.get("median") for impl, v in rec["timings_ms"].items()}
    rec["ms_per_image"] = {impl: v / batch for impl, v in med.items() if v}
    rec["images_per_s"] = {impl: 1e3 * batch / v for impl, v in med.items() if v}
    rec["speedup"] = _ratio(med.get("torch"), med.get("atrous"))
    errors = [v["error"] for v in rec["timings_ms"].values() if "error" in v]
    mismatch = not _within(rec.get("max_rel_err"), cfg.tolerance) or (
        step == "train" and not _within(rec.get("grad_rel_err"), cfg.grad_tolerance))
    rec["check"] = "ERROR" if errors else "MISMATCH" if mismatch else "ok"
    rec["ok"] = rec["check"] == "ok"
    rec["noisy"] = [impl for impl, v in rec["timings_ms"].items() if v.get("spread", 0) > NOISY_SPREAD]


MODEL_STEP_LABEL = {"forward": "forward (eval, no_grad)",
                    "train": "training step (forward + loss + backward + SGD)",
                    "fused": "fused eval model (atrous.nn.fuse), forward"}


def summarize_models(records: list[dict], steps: Sequence[str]) -> list[dict]:
    """Per step: the geometric mean of x over the ok cases, and the smallest x."""
    lines = []
    for step in steps:
        pairs = [(r["steps"][step]["speedup"], r["name"]) for r in records
                 if step in r["steps"] and r["steps"][step]["ok"] and r["steps"][step]["speedup"]]
        entry: dict[str, Any] = {"key": f"model_{step}", "label": MODEL_STEP_LABEL[step], "step": step,
                                 "count": len(pairs), "x": geomean(v for v, _ in pairs)}
        if pairs:
            v, name = min(pairs)
            entry["min"] = {"value": v, "case": name}
        lines.append(entry)
    return lines


def _model_header_lines(report: dict) -> list[str]:
    s = report["settings"]
    return [
        _header_lines(report)[0],
        f"times: median ms of up to {s['repeats']} runs after {s['warmup']} warm-up ({s['timer']}); "
        f"{s['layout']} input; per image = median / batch; x = impl='torch' time / impl='atrous' time "
        f"(> 1x: atrous faster)",
    ]


def format_model_summary(report: dict) -> list[str]:
    out = []
    for entry in report["models_summary"]:
        if not entry["count"]:
            out.append(f"  {entry['label']:<50} n/a (no case measured and correct)")
            continue
        m = entry.get("min", {})
        count = f"{entry['count']} case{'s' if entry['count'] > 1 else ''}"
        out.append(f"  {entry['label']:<50} {_x(entry['x'])}  min {_x(m.get('value'))} ({m.get('case')})"
                   f"  [{count}]")
    return out


def model_table(report: dict) -> Table:
    headers = ["case", "input", "step", "atrous ms/img", "torch ms/img", "atrous img/s", "torch img/s", "x",
               "max err", "grad err", "check"]
    rows = []
    for r in report["models"]:
        for step, rec in r["steps"].items():
            per_image, per_s = rec["ms_per_image"], rec["images_per_s"]
            grad = _fmt_err([rec["grad_rel_err"]]) if "grad_rel_err" in rec else "-"
            errors = [f"{impl}: {v['error']}" for impl, v in rec["timings_ms"].items() if "error" in v]
            check = rec["check"] + (" noisy" if rec["noisy"] else "") + "".join(f"; {e}" for e in errors)
            err = _fmt_err([rec["max_rel_err"]]) if "max_rel_err" in rec else "-"
            rows.append([r["name"], r["input"], step,
                         _ms(per_image.get("atrous")), _ms(per_image.get("torch")),
                         _num(per_s.get("atrous"), ".2f"), _num(per_s.get("torch"), ".2f"),
                         _x(rec["speedup"]), err, grad, check])
    title = ("models: impl='atrous' against impl='torch', same weights and input (max err: output, or the "
             "loss for train; grad err: ||g_atrous - g_torch|| / ||g_torch||)")
    return Table(title, headers, rows, left=3)


def _model_notes(report: dict) -> list[str]:
    notes = []
    for r in report["models"]:
        blocks = r.get("fused_separable_blocks")
        if blocks and blocks["separable"]:
            notes.append(f"  {r['model']}: fused step runs {blocks['fused_op']} of {blocks['separable']} "
                         "separable blocks on atrous.ops.separable_conv2d")
    return sorted(set(notes))


def format_model_report(report: dict) -> str:
    parts = ["\n".join(_model_header_lines(report)), model_table(report).text()]
    notes = _model_notes(report)
    if notes:
        parts.append("notes\n" + "\n".join(notes))
    parts.append("summary (geometric means over cases; x = torch time / atrous time)\n"
                 + "\n".join(format_model_summary(report)))
    return "\n\n".join(parts)


def markdown_model_report(report: dict) -> str:
    lines = [f"Regenerate with `{report['command']}` "
             f"(the JSON and chart go to `{report['settings']['out']}/`).", ""]
    lines += [f"{line}  " for line in _model_header_lines(report)]
    lines += ["", "```", "summary (geometric means over cases; x = torch time / atrous time)"]
    lines += format_model_summary(report) + _model_notes(report)
    lines += ["```", "", model_table(report).markdown()]
    return "\n".join(lines)


def plot_models(report: dict, path: Path) -> Path:
    """Left: images/s of each impl per case and step; right: x = torch time / atrous time (log scale)."""
    rows = [(f"{r['name']} {step}", rec) for r in report["models"] for step, rec in r["steps"].items()]
    fig, axes = _figure(1.5 + 0.45 * max(1, len(rows)), ncols=2, sharey=True)
    ax_rate, ax_x = axes[0]
    ys = range(len(rows))
    for k, (impl, color) in enumerate((("atrous", "#1f77b4"), ("torch", "#ff7f0e"))):
        ax_rate.barh([y - 0.2 + 0.4 * k for y in ys], [rec["images_per_s"].get(impl, 0) for _, rec in rows],
                     height=0.4, color=color, label=f"impl='{impl}'")
    ax_rate.set_xlabel("images / s (higher is faster)")
    ax_rate.legend(fontsize=8)
    from matplotlib.ticker import FuncFormatter

    x = [rec["speedup"] or 1.0 for _, rec in rows]  # a failed row shows as 1x, without a label
    ax_x.barh(list(ys), [v - 1 for v in x], left=1, height=0.6,
              color=["#2ca02c" if v >= 1 else "#d62728" for v in x])
    for y, v, (_, rec) in zip(ys, x, rows):
        if rec["speedup"]:
            ax_x.annotate(_x(v), (v, y), xytext=(3 if v >= 1 else -3, 0), textcoords="offset points",
                          ha="left" if v >= 1 else "right", va="center", fontsize=7)
    ax_x.axvline(1.0, color="black", linewidth=1)
    ax_x.set_xscale("log")
    ax_x.margins(x=0.15)
    for axis in (ax_x.xaxis.set_major_formatter, ax_x.xaxis.set_minor_formatter):
        axis(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax_x.set_xlabel("torch time / atrous time (log scale; > 1: atrous faster)")
    ax_rate.set_yticks(list(ys), [label for label, _ in rows], fontsize=7)
    ax_rate.set_ylim(len(rows) - 0.5, -0.5)  # first case on top
    for ax in (ax_rate, ax_x):
        ax.grid(axis="x", which="both", alpha=0.3)
    m, s = report["machine"], report["settings"]
    fig.suptitle(f"atrous bench --models: {m['device_name']}, {s['dtype']}, {s['layout']}", fontsize=10,
                 x=0.02, ha="left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _run_model_mode(cfg: Config, timer: CpuTimer | CudaTimer, report: dict, echo) -> dict:
    from .models import AtrousRateWarning
    from .nn import fuse

    names = list(dict.fromkeys(c.model for c in cfg.model_cases))
    report["settings"] |= {
        "models": names, "sizes": sorted({c.size for c in cfg.model_cases}),
        "batches": sorted({c.batch for c in cfg.model_cases}), "steps": list(cfg.steps), "layout": cfg.layout,
        "num_classes": NUM_CLASSES, "output_stride": MODEL_OUTPUT_STRIDE,
        "grad_tolerance": cfg.grad_tolerance,
        "train": "train mode; cross-entropy on random labels, backward, SGD(lr=1e-3, momentum=0.9) on each "
                 "impl's own copy; the first step (dropout off) is checked and counts as a warm-up",
        "fused": "atrous.nn.fuse(model): batch norms folded, separable blocks on the fused op; eval forward",
    }
    echo(_model_header_lines(report)[0])
    echo(f"{len(cfg.model_cases)} model cases x {len(cfg.steps)} steps ({', '.join(cfg.steps)}); "
         "a line per step as it finishes, then the table")
    records = []
    with warnings.catch_warnings():
        # Small inputs (--quick, tests) leave maps smaller than the ASPP rates; the timing is still valid.
        warnings.simplefilter("ignore", AtrousRateWarning)
        for name in names:
            model = build_model(cfg.factories[name], cfg)
            fused = fuse(model) if "fused" in cfg.steps else None
            for case in (c for c in cfg.model_cases if c.model == name):
                records.append(run_model_case(case, model, fused, cfg, timer, echo))
            del model, fused
    report["models"] = records
    report["models_summary"] = summarize_models(records, cfg.steps)
    report["results"], report["summary"] = [], []
    echo("")
    echo(format_model_report(report))
    _write(report, cfg, "models", plot_models, echo, markdown=markdown_model_report)
    if cfg.update_readme:
        update_readme(cfg.update_readme, markdown_model_report(report),
                      MODELS_README_START, MODELS_README_END)
        echo(f"updated the models block of {cfg.update_readme}")
    return report


def _list_models(registry: dict[str, Callable[..., Any]]) -> str:
    rows = [[name, "default" if name in DEFAULT_MODELS else ""] for name in registry]
    return Table("models (--models NAMES or globs; built with num_classes=21, output_stride=16)",
                 ["name", "note"], rows).text()


# ============================================================================================
# Machine description
# ============================================================================================

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        name = fields.get("model name\t", "").strip() or platform.processor()
        flags = fields.get("flags\t\t", "").split()
        simd = [f for f in ("avx512f", "avx2", "neon") if f in flags][:1]
        return f"{name}{' (' + simd[0] + ')' if simd else ''}"
    except OSError:
        return platform.processor() or platform.machine()


def machine_info(device: torch.device, timer: CpuTimer | CudaTimer, copy: dict) -> dict:
    info = {
        "device": str(device), "cpu": cpu_model(), "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),  # left at torch's default
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "copy_bandwidth": copy,
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["l2_bytes"] = timer.l2_bytes
        info["tf32"] = False
    else:
        info["device_name"] = f"{info['cpu']}, {info['cores']} cores"
    return info


def build_info() -> dict:
    try:
        from . import info

        return info.collect()
    except Exception as exc:  # the report is still useful without it
        return {"error": _first_line(exc)}


@contextlib.contextmanager
def exact_fp32():
    """No TF32 on CUDA: an fp32 kernel is compared with fp32 cuDNN/cuBLAS, not with TF32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# ============================================================================================
# Command line
# ============================================================================================

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("exit status: 0 = every row matches PyTorch, 1 = a mismatch or a failing op, "
                     "2 = bad options\n\n" + (__doc__ or "").split("\n\n", 1)[1])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--ops", default=",".join(OPS), metavar="LIST",
                        help=f"comma-separated, from {','.join(OPS)} (default: all)")
    parser.add_argument("--shapes", default=None, metavar="LIST",
                        help="comma-separated shape names or globs (os16-aspp-*), optionally with a batch "
                             "suffix (os16-middle-dw728-n4); see --list (default: all, or the quick set)")
    parser.add_argument("--batch", default=None, metavar="LIST",
                        help="comma-separated batch sizes (default: 1; all of the list: 1,8)")
    parser.add_argument("--quick", action="store_true",
                        help=f"batch 1, {len(QUICK_SHAPES)} shapes, fewer runs (about a minute on 2 cores)")
    parser.add_argument("--repeats", type=int, default=None, metavar="N",
                        help=f"most timed runs per measurement (default {DEFAULT_REPEATS}; "
                             f"--quick {QUICK_REPEATS})")
    parser.add_argument("--warmup", type=int, default=1, metavar="N", help="untimed runs first (default 1)")
    parser.add_argument("--budget", type=float, default=None, metavar="S",
                        help="stop repeating a measurement after S seconds, once 3 runs are in "
                             f"(default {DEFAULT_BUDGET_S}; --quick {QUICK_BUDGET_S})")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest error relative to the tensor's largest value "
                             "(default 1e-4 float32, 1e-10 float64, 1e-2 half types)")
    parser.add_argument("--out", default="bench-out", metavar="DIR",
                        help="where bench.json, bench.png and bench.md go (default bench-out/)")
    parser.add_argument("--update-readme", default=None, metavar="PATH",
                        help=f"replace the block between {README_START} and {README_END} in PATH "
                             f"with the summary and tables (with --models: {MODELS_README_START} and "
                             f"{MODELS_README_END})")
    parser.add_argument("--ladder", default=None, metavar="OP",
                        help="time every rung of one op (depthwise_conv2d, pointwise_conv2d, atrous_conv2d, "
                             "separable_conv2d) on one shape (--shapes NAME; default a middle-flow shape)")
    parser.add_argument("--rung-budget", type=float, default=20.0, metavar="S",
                        help="ladder: skip a rung whose run is estimated over S seconds, and cap its "
                             "repeats to fit in S (default 20)")
    parser.add_argument("--list", action="store_true",
                        help="list the shapes (with --models: the models) and exit")
    models = parser.add_argument_group(
        "model mode", "time whole DeepLab models, impl='atrous' against impl='torch' (step 7 below)")
    models.add_argument("--models", nargs="?", const=",".join(DEFAULT_MODELS), default=None, metavar="LIST",
                        help="comma-separated names or globs from atrous.models.MODELS (without LIST: "
                             f"{','.join(DEFAULT_MODELS)}); --batch defaults to "
                             f"{','.join(map(str, DEFAULT_MODEL_BATCHES))} and --repeats to "
                             f"{DEFAULT_MODEL_REPEATS} (--quick: batch 1, {QUICK_MODEL_REPEATS} repeats); "
                             "writes models.json, models.md, models.png")
    models.add_argument("--size", type=int, default=None, metavar="N",
                        help=f"input height = width (default {DEFAULT_MODEL_SIZE}; "
                             f"--quick {QUICK_MODEL_SIZE})")
    models.add_argument("--steps", default=None, metavar="LIST",
                        help=f"comma-separated, from {','.join(MODEL_STEPS)} (default: all)")
    models.add_argument("--layout", default=None, choices=LAYOUTS,
                        help="memory format of the input and the weights, the same for both impls "
                             "(default nchw)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: tiny shapes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atrous bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def command_line(args: argparse.Namespace) -> str:
    """`python -m atrous bench` plus every option that differs from its default (for the README)."""
    defaults = vars(build_parser().parse_args([]))
    parts = ["python -m atrous bench"]
    for key, value in vars(args).items():
        if key not in defaults or value == defaults[key] or key == "tiny" or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


def _positive_ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise BenchError(f"{option}: expected comma-separated positive integers, got {text!r}")
    return sorted(set(values))


def _device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise BenchError(f"--device: expected cpu or cuda[:N], got {text!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(
                f"--device {text}: no CUDA GPU is visible to torch (torch.cuda.is_available() is False; "
                f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none: a CPU build'}). "
                "Run on a machine with a GPU, or use --device cpu")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise BenchError(f"--device {text}: expected an index below {torch.cuda.device_count()}, "
                             f"the number of visible GPUs")
        device = torch.device("cuda", index)
    return device


def resolve(args: argparse.Namespace, shapes: Sequence[Shape] | None = None,
            models: dict[str, Callable[..., Any]] | None = None) -> Config:
    """Checks the options and turns them into a Config; raises BenchError naming the bad option.

    models: the registry that --models names come from (default atrous.models.MODELS)."""
    device = _device(args.device)
    ops = tuple(o.strip() for o in args.ops.split(",") if o.strip())
    if not ops or any(o not in OPS for o in ops):
        raise BenchError(f"--ops: expected comma-separated names from {', '.join(OPS)}, got {args.ops!r}")
    for option, value, least in (("--repeats", args.repeats, 1), ("--warmup", args.warmup, 0)):
        if value is not None and value < least:
            raise BenchError(f"{option}: expected an integer >= {least}, got {value}")
    for option, value in (("--budget", args.budget), ("--rung-budget", args.rung_budget)):
        if value is not None and not value >= 0:
            raise BenchError(f"{option}: expected seconds >= 0, got {value}")
    if args.tolerance is not None and not args.tolerance > 0:
        raise BenchError(f"--tolerance: expected a positive number, got {args.tolerance}")
    if args.models is not None:
        return _resolve_models(args, device, models)
    for option, value in (("--size", args.size), ("--steps", args.steps), ("--layout", args.layout)):
        if value is not None:
            raise BenchError(f"{option}: applies to the model mode only; add --models (the layer benchmark "
                             "times both layouts on each shape's own size)")
    ladder_kind = None
    if args.ladder is not None:
        kinds = {v: k for k, v in OP_FUNCTION.items()} | {k: k for k in OP_FUNCTION}
        if args.ladder not in kinds:
            raise BenchError(f"--ladder: expected one of {', '.join(OP_FUNCTION.values())}, "
                             f"got {args.ladder!r}")
        ladder_kind = kinds[args.ladder]
        ops = (ladder_kind,)

    shapes = TINY_SHAPES if args.tiny else SHAPES if shapes is None else tuple(shapes)
    patterns = [p.strip() for p in args.shapes.split(",") if p.strip()] if args.shapes else None
    if patterns is None and args.quick and not args.tiny:
        patterns = list(QUICK_SHAPES)
    if patterns is None and ladder_kind and not args.tiny:
        patterns = [DEFAULT_LADDER_SHAPE[ladder_kind]]
    batches = (_positive_ints(args.batch, "--batch") if args.batch
               else [2] if args.tiny else list(DEFAULT_BATCHES))
    cases = select_cases(shapes, ops, patterns, batches)
    if ladder_kind and len(cases) != 1:
        names = ", ".join(c.name for c in cases[:6]) + (", ..." if len(cases) > 6 else "")
        raise BenchError(f"--ladder times one shape: expected --shapes (and --batch) to select one case, "
                         f"got {len(cases)} ({names})")
    repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    budget = args.budget if args.budget is not None else QUICK_BUDGET_S if args.quick else DEFAULT_BUDGET_S
    return Config(
        device=device, dtype=getattr(torch, args.dtype), ops=ops, cases=cases,
        plan=TimingPlan(warmup=args.warmup, repeats=repeats, budget_s=budget),
        tolerance=args.tolerance or TOLERANCE[args.dtype], out=Path(args.out), command=command_line(args),
        update_readme=Path(args.update_readme) if args.update_readme else None,
        ladder=OP_FUNCTION[ladder_kind] if ladder_kind else None, rung_budget_s=args.rung_budget,
        copy_bytes=(16 << 20) if args.tiny else 256 << 20,
    )


def _resolve_models(args: argparse.Namespace, device: torch.device,
                    registry: dict[str, Callable[..., Any]] | None) -> Config:
    """resolve() for the model mode: --models, --size, --batch, --steps, --layout."""
    for option, value in (("--ladder", args.ladder), ("--shapes", args.shapes),
                          ("--ops", None if args.ops == ",".join(OPS) else args.ops)):
        if value is not None:
            raise BenchError(f"{option}: selects layers, not models; with --models use --size, --batch "
                             "and --steps")
    registry = model_registry() if registry is None else dict(registry)
    patterns = [p.strip() for p in args.models.split(",") if p.strip()]
    if not patterns:
        raise BenchError(f"--models: expected comma-separated names or globs from {', '.join(registry)}, "
                         f"got {args.models!r}")
    names = select_models(registry, patterns)
    steps = [p.strip() for p in (args.steps or ",".join(MODEL_STEPS)).split(",") if p.strip()]
    if not steps or any(p not in MODEL_STEPS for p in steps):
        raise BenchError(f"--steps: expected comma-separated names from {', '.join(MODEL_STEPS)}, "
                         f"got {args.steps!r}")
    if args.size is not None and args.size < 1:
        raise BenchError(f"--size: expected a positive integer, got {args.size}")
    size = args.size or (TINY_MODEL_SIZE if args.tiny
                         else QUICK_MODEL_SIZE if args.quick else DEFAULT_MODEL_SIZE)
    batches = (_positive_ints(args.batch, "--batch") if args.batch
               else QUICK_MODEL_BATCHES if args.quick or args.tiny else DEFAULT_MODEL_BATCHES)
    repeats = args.repeats or (QUICK_MODEL_REPEATS if args.quick else DEFAULT_MODEL_REPEATS)
    budget = args.budget if args.budget is not None else QUICK_BUDGET_S if args.quick else DEFAULT_BUDGET_S
    return Config(
        device=device, dtype=getattr(torch, args.dtype), ops=(), cases=[],
        plan=TimingPlan(warmup=args.warmup, repeats=repeats, budget_s=budget),
        tolerance=args.tolerance or TOLERANCE[args.dtype], out=Path(args.out), command=command_line(args),
        update_readme=Path(args.update_readme) if args.update_readme else None,
        copy_bytes=(16 << 20) if args.tiny else 256 << 20,
        model_cases=[ModelCase(name, b, size) for name in names for b in batches],
        steps=tuple(s for s in MODEL_STEPS if s in steps), layout=args.layout or "nchw",
        grad_tolerance=GRAD_TOLERANCE[args.dtype], factories={name: registry[name] for name in names},
    )


def _list_shapes(shapes: Sequence[Shape]) -> str:
    rows = [[s.name, s.op, "/".join(map(str, s.output_strides)), s.describe(), s.where] for s in shapes]
    return Table("shapes (a case appends -n<batch>: batch 1 by default, --batch 1,8 for training batches)",
                 ["name", "op", "OS", "geometry (C x H x W -> C_out x H_out x W_out, kernel)", "layer"],
                 rows, left=5).text()


def _features(ops: Any) -> dict:
    import inspect

    def takes_algo(name: str) -> bool:
        fn = getattr(ops, name, None)
        try:
            return fn is not None and "algo" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return False

    return {"algorithms": hasattr(ops, "algorithms"), "separable_conv2d": hasattr(ops, "separable_conv2d"),
            "algo": {name: takes_algo(name) for name in OP_FUNCTION.values()}}


def _report_base(cfg: Config, timer: CpuTimer | CudaTimer, ops: Any) -> dict:
    copy = copy_bandwidth(cfg.device, timer, cfg.copy_bytes)
    return {
        "schema": "atrous-bench/1",
        "command": cfg.command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(cfg.device, timer, copy),
        "atrous": build_info(),
        "features": _features(ops),
        "settings": {"dtype": str(cfg.dtype).removeprefix("torch."), "warmup": cfg.plan.warmup,
                     "repeats": cfg.plan.repeats, "min_runs": MIN_RUNS, "budget_s": cfg.plan.budget_s,
                     "tolerance": cfg.tolerance, "out": str(cfg.out), "ops": list(cfg.ops),
                     "timer": "CUDA events, L2 flushed before each run" if timer.flushes else "perf_counter",
                     "backward": "autograd.grad(retain_graph=True) on a graph built once, untimed; "
                                 "input and weight gradients"},
    }


def run(cfg: Config, ops: Any = None, echo: Callable[[str], None] = print) -> dict:
    """Runs the benchmark (or the ladder) described by cfg and writes the files; returns the report."""
    if ops is None:
        from . import ops  # noqa: PLW0127  (the compiled kernels; raises with build help if missing)
    if cfg.ladder:
        _check_ladder_api(cfg.ladder, _features(ops))  # before spending time on the copy bandwidth
    timer = CudaTimer(cfg.device) if cfg.device.type == "cuda" else CpuTimer()
    with exact_fp32():
        report = _report_base(cfg, timer, ops)
        copy_gbps = report["machine"]["copy_bandwidth"]["GBps"]
        if cfg.ladder:
            return _run_ladder_mode(cfg, timer, copy_gbps, ops, report, echo)
        if cfg.model_cases:
            return _run_model_mode(cfg, timer, report, echo)
        echo(_header_lines(report)[0])
        echo(f"{len(cfg.cases)} cases; a line per case as it finishes, then the tables")
        results = []
        for case in cfg.cases:
            geometry = f"{case.input_dims} -> {case.shape.describe().split(' -> ')[1]}"
            if case.shape.op == "separable" and not report["features"]["separable_conv2d"]:
                results.append({"name": case.name, "shape": case.shape.name, "op": case.shape.op,
                                "batch": case.batch, "geometry_text": geometry, "ok": True, "directions": {},
                                "skipped": "atrous.ops.separable_conv2d is not in this build yet"})
                continue
            started = time.perf_counter()
            record = run_case(case, cfg, timer, copy_gbps, ops)
            record["geometry_text"] = geometry
            results.append(record)
            x = record["directions"]["forward"]["speedup"]["ours"]
            checks = "/".join(rec["check"] for rec in record["directions"].values())
            echo(f"  {case.name:<30} {time.perf_counter() - started:6.1f} s  forward x NCHW "
                 f"{_x(x.get('nchw'))}, x CL {_x(x.get('channels_last'))}  check {checks}")
    report["results"] = results
    report["summary"] = summarize(results)
    echo("")
    echo(format_report(report))
    _write(report, cfg, "bench", plot_results, echo)
    if cfg.update_readme:
        update_readme(cfg.update_readme, markdown_report(report))
        echo(f"updated the bench block of {cfg.update_readme}")
    return report


def _check_ladder_api(op: str, features: dict) -> None:
    if not features["algorithms"]:
        raise BenchError("--ladder: this build of atrous has no atrous.ops.algorithms() yet (it comes with "
                         "the kernel ladder); expected a build whose ops take algo=...")
    if not features["algo"].get(op, False):
        raise BenchError(f"--ladder {op}: expected atrous.ops.{op} to exist and take an algo= argument "
                         "in this build")


def _run_ladder_mode(cfg: Config, timer, copy_gbps: float, ops: Any, report: dict, echo) -> dict:
    (case,) = cfg.cases
    report["ladder"] = run_ladder(case, cfg, timer, copy_gbps, ops)
    report["results"], report["summary"] = [], []
    echo(format_ladder(report["ladder"], report))
    _write(report, cfg, f"ladder-{cfg.ladder}-{case.name}", lambda r, p: plot_ladder(r["ladder"], p), echo)
    return report


def _write(report: dict, cfg: Config, stem: str, plot: Callable[[dict, Path], Path], echo,
           markdown: Callable[[dict], str] = markdown_report) -> None:
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / f"{stem}.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    written = [f"{stem}.json"]
    if not report.get("ladder"):
        (cfg.out / f"{stem}.md").write_text(markdown(report) + "\n")
        written.append(f"{stem}.md")
    try:
        plot(report, cfg.out / f"{stem}.png")
        written.append(f"{stem}.png")
    except ImportError as exc:  # matplotlib is optional for the numbers
        echo(f"no chart: {exc}")
    echo(f"wrote {', '.join(written)} to {cfg.out}/")


def report_ok(report: dict) -> bool:
    if report.get("models") is not None:
        return all(r["ok"] for r in report["models"])
    if report.get("ladder"):
        return all(r.get("ok", True) and "error" not in r for r in report["ladder"]["rows"])
    return all(r["ok"] for r in report["results"])


def main(args: argparse.Namespace, shapes: Sequence[Shape] | None = None, ops: Any = None,
         models: dict[str, Callable[..., Any]] | None = None) -> int:
    """Entry point of `python -m atrous bench`. shapes/ops/models: replacements for tests and notebooks
    (models: name -> factory(num_classes=..., output_stride=...), instead of atrous.models.MODELS)."""
    if args.list and args.models is not None:
        print(_list_models(model_registry() if models is None else models))
        return EXIT_OK
    if args.list:
        print(_list_shapes(TINY_SHAPES if args.tiny else SHAPES if shapes is None else shapes))
        return EXIT_OK
    try:
        cfg = resolve(args, shapes, models)
        report = run(cfg, ops)
    except BenchError as exc:
        print(f"python -m atrous bench: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ImportError as exc:  # the extension is not built: its message says how to build it
        print(f"python -m atrous bench: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK if report_ok(report) else EXIT_MISMATCH


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
