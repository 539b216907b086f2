"""A run's settings: `Options` (one field per flag of `python -m atrous bench`), checked into a `Config`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from atrous.models import MODELS

from .common import ALL_OPS, DTYPES, LAYOUTS, NOISY_SPREAD, OP_FUNCTION, OPS, TOLERANCE, BenchError
from .shapes import (
    DEFAULT_LADDER_SHAPE,
    QUICK_SHAPES,
    SHAPES,
    TINY_SHAPES,
    Case,
    ModelCase,
    Shape,
    select_cases,
    select_models,
)
from .timing import TimingPlan

__all__ = [
    "DEFAULT_BATCHES", "DEFAULT_BUDGET_S", "DEFAULT_MODELS", "DEFAULT_MODEL_BATCHES", "DEFAULT_MODEL_REPEATS",
    "DEFAULT_MODEL_RETRIES", "DEFAULT_MODEL_SIZE", "DEFAULT_REPEATS",
    "DEFAULT_RETRIES", "INFERENCE_CASE", "INFERENCE_STEPS", "QUICK_INFERENCE_CASE", "QUICK_TRAIN_CASE",
    "TRAIN_CASE", "FULL_BATCHES", "GRAD_TOLERANCE", "MODEL_IMPLS",
    "MODEL_OUTPUT_STRIDE", "MODEL_STEPS", "NUM_CLASSES", "QUICK_BUDGET_S", "QUICK_MODEL_BATCHES",
    "QUICK_MODEL_REPEATS", "QUICK_MODEL_SIZE", "QUICK_REPEATS", "TINY_MODEL_SIZE", "Config", "Options",
    "as_options", "command_line", "resolve",
]

# Batch 1 is inference, batch 8 training. Every shape exists at both (--batch 1,8), but the
# default run is batch 1 only: batch 8 multiplies the run time by about 6 on 2 cores.
DEFAULT_BATCHES, FULL_BATCHES = (1,), (1, 8)
DEFAULT_REPEATS, DEFAULT_BUDGET_S = 20, 0.5
QUICK_REPEATS, QUICK_BUDGET_S = 10, 0.25
# A set of interleaved contenders whose runs spread by more than --max-spread is measured again, up to
# --retries more times (models: fewer, a model run takes seconds).
DEFAULT_RETRIES, DEFAULT_MODEL_RETRIES = 2, 1
# Model mode (--models): whole networks, impl="atrous" against impl="torch" (step 7 of the package docstring).
DEFAULT_MODELS = ("deeplabv3plus_xception65", "deeplabv3plus_mobilenet_v3_large", "deeplabv3_resnet50")
MODEL_STEPS = ("forward", "train", "fused", "best")
INFERENCE_STEPS = ("forward", "fused", "best")
MODEL_IMPLS = ("torch", "atrous")  # PyTorch first: its result is the reference
NUM_CLASSES, MODEL_OUTPUT_STRIDE = 21, 16  # PASCAL VOC, and the DeepLabV3+ paper's output stride
DEFAULT_MODEL_SIZE, QUICK_MODEL_SIZE, TINY_MODEL_SIZE = 513, 257, 33
DEFAULT_MODEL_BATCHES, QUICK_MODEL_BATCHES = (1, 8), (1,)
# Without --size and --batch each step runs where it matters: inference (forward, fused, best) on one
# 513x513 image, the training step on a batch of 8 crops of 257x257 (--quick: 257 and 2 of 129).
INFERENCE_CASE, TRAIN_CASE = (1, DEFAULT_MODEL_SIZE), (8, 257)
QUICK_INFERENCE_CASE, QUICK_TRAIN_CASE = (1, QUICK_MODEL_SIZE), (2, 129)
DEFAULT_MODEL_REPEATS, QUICK_MODEL_REPEATS = 5, 3  # a model run takes seconds: the budget stops at 3
GRAD_TOLERANCE = {"float64": 1e-6, "float32": 0.1, "float16": 0.5, "bfloat16": 0.5}  # see step 7

Items = str | Sequence[str] | None  # "a,b" as on the command line, or ["a", "b"]


@dataclass
class Options:
    """What `python -m atrous bench` takes, one field per flag (same name, same default; see its --help).

    From Python: ``resolve(Options(shapes="os16-middle-dw728", repeats=5))``. Lists may be given as
    comma-separated strings, as on the command line, or as sequences.
    """

    device: str = "cpu"
    dtype: str = "float32"
    ops: Items = ALL_OPS
    shapes: Items = None
    batch: Items = None
    quick: bool = False
    repeats: int | None = None
    warmup: int = 1
    budget: float | None = None
    max_spread: float = NOISY_SPREAD
    retries: int | None = None
    tolerance: float | None = None
    out: str | Path = "bench-out"
    update_readme: str | Path | None = None
    ladder: str | None = None
    rung_budget: float = 20.0
    list: bool = False
    models: Items = None  # the model mode; the flag alone means DEFAULT_MODELS
    size: int | None = None
    steps: Items = None
    layout: str | None = None
    same_isa: str | None = None  # rerun in a subprocess with both libraries held to one ISA
    tiny: bool = False  # every op on a few tiny planes (the tests)


def as_options(options: Any = None) -> Options:
    """Options from an Options, an argparse namespace (its fields of the same names) or None (defaults)."""
    if options is None or isinstance(options, Options):
        return options or Options()
    return Options(**{f.name: getattr(options, f.name) for f in dataclasses.fields(Options)
                      if hasattr(options, f.name)})


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
    # Model mode (--models): the cases, what is timed, and the factories of the models named.
    model_cases: list[ModelCase] = dataclasses.field(default_factory=list)
    steps: tuple[str, ...] = MODEL_STEPS
    layout: str = "nchw"
    grad_tolerance: float = GRAD_TOLERANCE["float32"]
    factories: dict[str, Callable[..., Any]] = dataclasses.field(default_factory=dict)


def _items(value: Items) -> list[str]:
    parts = value.split(",") if isinstance(value, str) else list(value or ())
    return [str(p).strip() for p in parts if str(p).strip()]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ",".join(map(str, value)) if isinstance(value, Sequence) \
        else str(value)


def command_line(options: Any) -> str:
    """`python -m atrous bench` plus every option that differs from its default (for the README)."""
    options, defaults = as_options(options), Options()
    parts = ["python -m atrous bench"]
    for field in dataclasses.fields(Options):
        value = getattr(options, field.name)
        if value is None or value == getattr(defaults, field.name) or field.name == "tiny":
            continue
        flag = "--" + field.name.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {_text(value)}")
    return " ".join(parts)


def _positive_ints(value: Items, option: str) -> list[int]:
    try:
        values = [int(v) for v in _items(value)]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise BenchError(f"{option}: expected comma-separated positive integers, got {_text(value)!r}")
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


def resolve(options: Any = None, shapes: Sequence[Shape] | None = None,
            registry: Mapping[str, Callable[..., Any]] | None = None) -> Config:
    """Checks the options and turns them into a Config; raises BenchError naming the bad option.

    options: an Options (or the command's argparse namespace); shapes: the table --shapes picks from
    (default SHAPES); registry: where --models names come from (default atrous.models.MODELS).
    """
    o = as_options(options)
    if o.dtype not in DTYPES:
        raise BenchError(f"--dtype: expected one of {', '.join(DTYPES)}, got {o.dtype!r}")
    device = _device(o.device)
    ops = tuple(_items(o.ops))
    if not ops or any(op not in OPS for op in ops):
        raise BenchError(f"--ops: expected comma-separated names from {', '.join(OPS)}, got {_text(o.ops)!r}")
    for option, value, least in (("--repeats", o.repeats, 1), ("--warmup", o.warmup, 0),
                                 ("--retries", o.retries, 0)):
        if value is not None and value < least:
            raise BenchError(f"{option}: expected an integer >= {least}, got {value}")
    for option, value in (("--budget", o.budget), ("--rung-budget", o.rung_budget)):
        if value is not None and not value >= 0:
            raise BenchError(f"{option}: expected seconds >= 0, got {value}")
    if not o.max_spread > 0:
        raise BenchError(f"--max-spread: expected a positive fraction of the median, got {o.max_spread}")
    if o.tolerance is not None and not o.tolerance > 0:
        raise BenchError(f"--tolerance: expected a positive number, got {o.tolerance}")
    if o.update_readme is not None and not Path(o.update_readme).is_file():  # before the run, not after
        raise BenchError(f"--update-readme {o.update_readme}: no such file")
    if o.models is not None:
        return _resolve_models(o, device, MODELS if registry is None else registry)
    for option, value in (("--size", o.size), ("--steps", o.steps), ("--layout", o.layout)):
        if value is not None:
            raise BenchError(f"{option}: applies to the model mode only; add --models (the layer benchmark "
                             "times both layouts on each shape's own size)")
    ladder_kind = None
    if o.ladder is not None:
        kinds = {v: k for k, v in OP_FUNCTION.items()} | {k: k for k in OP_FUNCTION}
        if o.ladder not in kinds:
            raise BenchError(f"--ladder: expected one of {', '.join(OP_FUNCTION.values())}, got {o.ladder!r}")
        ladder_kind = kinds[o.ladder]
        ops = (ladder_kind,)

    shapes = TINY_SHAPES if o.tiny else SHAPES if shapes is None else tuple(shapes)
    patterns = _items(o.shapes) or None
    if patterns is None and o.quick and not o.tiny:
        patterns = list(QUICK_SHAPES)
    if patterns is None and ladder_kind and not o.tiny:
        patterns = [DEFAULT_LADDER_SHAPE[ladder_kind]]
    batches = _positive_ints(o.batch, "--batch") if o.batch else [2] if o.tiny else list(DEFAULT_BATCHES)
    cases = select_cases(shapes, ops, patterns, batches)
    if ladder_kind and len(cases) != 1:
        names = ", ".join(c.name for c in cases[:6]) + (", ..." if len(cases) > 6 else "")
        raise BenchError(f"--ladder times one shape: expected --shapes (and --batch) to select one case, "
                         f"got {len(cases)} ({names})")
    repeats = o.repeats or (QUICK_REPEATS if o.quick else DEFAULT_REPEATS)
    budget = o.budget if o.budget is not None else QUICK_BUDGET_S if o.quick else DEFAULT_BUDGET_S
    return Config(
        device=device, dtype=getattr(torch, o.dtype), ops=ops, cases=cases,
        plan=TimingPlan(warmup=o.warmup, repeats=repeats, budget_s=budget, max_spread=o.max_spread,
                        retries=DEFAULT_RETRIES if o.retries is None else o.retries),
        tolerance=o.tolerance or TOLERANCE[o.dtype], out=Path(o.out), command=command_line(o),
        update_readme=Path(o.update_readme) if o.update_readme else None,
        ladder=OP_FUNCTION[ladder_kind] if ladder_kind else None, rung_budget_s=o.rung_budget,
        copy_bytes=(16 << 20) if o.tiny else 256 << 20,
    )


def _resolve_models(o: Options, device: torch.device, registry: Mapping[str, Callable[..., Any]]) -> Config:
    """resolve() for the model mode: --models, --size, --batch, --steps, --layout."""
    for option, value in (("--ladder", o.ladder), ("--shapes", o.shapes),
                          ("--ops", None if _items(o.ops) == list(OPS) else o.ops)):
        if value is not None:
            raise BenchError(f"{option}: selects layers, not models; with --models use --size, --batch "
                             "and --steps")
    patterns = _items(o.models)
    if not patterns:
        raise BenchError(f"--models: expected comma-separated names or globs from {', '.join(registry)}, "
                         f"got {_text(o.models)!r}")
    names = select_models(registry, patterns)
    steps = _items(o.steps or ",".join(MODEL_STEPS))
    if not steps or any(p not in MODEL_STEPS for p in steps):
        raise BenchError(f"--steps: expected comma-separated names from {', '.join(MODEL_STEPS)}, "
                         f"got {_text(o.steps)!r}")
    if o.size is not None and o.size < 1:
        raise BenchError(f"--size: expected a positive integer, got {o.size}")
    if o.layout is not None and o.layout not in LAYOUTS:
        raise BenchError(f"--layout: expected one of {', '.join(LAYOUTS)}, got {o.layout!r}")
    steps = tuple(s for s in MODEL_STEPS if s in steps)
    if o.size is None and not o.batch and not o.tiny:  # each step at its own size and batch
        inference, train = ((QUICK_INFERENCE_CASE, QUICK_TRAIN_CASE) if o.quick
                            else (INFERENCE_CASE, TRAIN_CASE))
        plan = [(inference, tuple(s for s in steps if s in INFERENCE_STEPS)),
                (train, tuple(s for s in steps if s == "train"))]
        model_cases = [ModelCase(name, b, size, these)
                       for name in names for (b, size), these in plan if these]
    else:
        size = o.size or (TINY_MODEL_SIZE if o.tiny else QUICK_MODEL_SIZE if o.quick else DEFAULT_MODEL_SIZE)
        batches = (_positive_ints(o.batch, "--batch") if o.batch
                   else QUICK_MODEL_BATCHES if o.quick or o.tiny else DEFAULT_MODEL_BATCHES)
        model_cases = [ModelCase(name, b, size) for name in names for b in batches]
    repeats = o.repeats or (QUICK_MODEL_REPEATS if o.quick else DEFAULT_MODEL_REPEATS)
    budget = o.budget if o.budget is not None else QUICK_BUDGET_S if o.quick else DEFAULT_BUDGET_S
    return Config(
        device=device, dtype=getattr(torch, o.dtype), ops=(), cases=[],
        plan=TimingPlan(warmup=o.warmup, repeats=repeats, budget_s=budget, max_spread=o.max_spread,
                        retries=DEFAULT_MODEL_RETRIES if o.retries is None else o.retries),
        tolerance=o.tolerance or TOLERANCE[o.dtype], out=Path(o.out), command=command_line(o),
        update_readme=Path(o.update_readme) if o.update_readme else None,
        copy_bytes=(16 << 20) if o.tiny else 256 << 20,
        model_cases=model_cases, steps=steps, layout=o.layout or "nchw",
        grad_tolerance=GRAD_TOLERANCE[o.dtype], factories={name: registry[name] for name in names},
    )
