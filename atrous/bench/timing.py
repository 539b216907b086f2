"""Timing: warm-up, then runs timed one by one (CPU clock or CUDA events), their median and spread.

Steps 1 to 3 of the package docstring: `measure` warms a call up, times up to `repeats` runs within a
time budget and returns them as a `Measurement` (median, spread); `measure_interleaved` does the same
for several contenders at once, one run of each in turn (ABAB...), so that load from other processes
hits all of them alike, and reruns the set when a spread is too large; `copy_bandwidth` times a large
copy. `median_ms(fn)` is the one-line form for notebooks.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .common import NOISY_SPREAD

__all__ = ["DEFAULT_MAX_SPREAD", "MIN_RUNS", "CpuTimer", "CudaTimer", "Interleaved", "Measurement",
           "TimingPlan", "copy_bandwidth", "make_timer", "measure", "measure_interleaved", "median_ms"]

MIN_RUNS = 3  # a median needs a few runs; the time budget never cuts below this
DEFAULT_MAX_SPREAD = NOISY_SPREAD  # IQR / median above this: rerun the set (--retries), then mark it noisy


@dataclass
class Measurement:
    """Times of the timed runs of one call, in milliseconds."""

    runs_ms: list[float]
    hot_runs_ms: list[float] | None = None  # CUDA: the same call without the L2 flush
    attempts: int = 1  # measure_interleaved: how many times the set was measured (1 + reruns)

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
        out = {"median": self.median_ms, "spread": self.spread, "runs": self.runs_ms,
               "attempts": self.attempts}
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
    """How a call is timed: warm-up runs, at most `repeats` timed runs, stopping after `budget_s` seconds
    per contender (never below MIN_RUNS runs). measure_interleaved reruns a set of contenders up to
    `retries` times while one of them spreads by more than `max_spread`."""

    warmup: int = 1
    repeats: int = 10
    budget_s: float = 1.0
    max_spread: float = DEFAULT_MAX_SPREAD
    retries: int = 0


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


@dataclass
class Interleaved:
    """What measure_interleaved returns for one contender: its runs, its last output, or its error."""

    measurement: Measurement | None = None
    out: Any = None
    error: BaseException | None = None


def _interleave_once(calls: Mapping[str, Callable[[], Any]], timer: CpuTimer | CudaTimer, plan: TimingPlan,
                     warmup: int, results: dict[str, Interleaved]) -> dict[str, list[float]]:
    """One attempt: warm-up, then rounds of one timed run per live contender, in the order given.

    A contender that raises is dropped (its error kept in results); returns the runs of the others."""
    live = [name for name in calls if results[name].error is None]

    def call(name: str, time_it: bool, flush: bool = True) -> float | None:
        try:
            if time_it:
                ms, results[name].out = timer.time_ms(calls[name], flush)
                return ms
            results[name].out = calls[name]()
        except Exception as exc:  # noqa: BLE001  (a failing contender is reported, the others go on)
            results[name].error = exc
            live.remove(name)
        return None

    for _ in range(warmup):  # step 1, for each contender in turn
        for name in list(live):
            call(name, False)
    runs: dict[str, list[float]] = {name: [] for name in live}
    budget = plan.budget_s * max(1, len(live))  # the budget is per contender, as in measure()
    started, rounds = time.perf_counter(), 0
    while live and rounds < plan.repeats:  # step 2: A B A B ... so load hits every contender alike
        for name in list(live):
            ms = call(name, True)
            if ms is not None:
                runs[name].append(ms)
        rounds += 1
        if rounds >= min(MIN_RUNS, plan.repeats) and time.perf_counter() - started >= budget:
            break
    return {name: r for name, r in runs.items() if name in live}


def measure_interleaved(calls: Mapping[str, Callable[[], Any]], timer: CpuTimer | CudaTimer,
                        plan: TimingPlan) -> dict[str, Interleaved]:
    """Times several contenders together: after each one's warm-up, every round runs each once, in the
    order of `calls` (A B A B ...), until `repeats` rounds or the budget (budget_s per contender).

    When a contender's runs spread by more than plan.max_spread (interquartile range over median), the
    whole set is measured again, up to plan.retries more times (no new warm-up), and the attempt whose
    worst spread is smallest is kept; a contender still above max_spread is "noisy" to the report.
    Returns, per name, its Measurement (with `attempts`), its last output, or the exception it raised.
    """
    results = {name: Interleaved() for name in calls}
    best: dict[str, list[float]] | None = None
    best_worst = math.inf
    attempts = 0
    for attempt in range(1 + max(0, plan.retries)):
        runs = _interleave_once(calls, timer, plan, plan.warmup if attempt == 0 else 0, results)
        attempts += 1
        runs = {name: r for name, r in runs.items() if results[name].error is None}
        worst = max((Measurement(r).spread for r in runs.values() if r), default=0.0)
        if best is None or worst < best_worst:
            best, best_worst = runs, worst
        if worst <= plan.max_spread or not runs:
            break
    hot: dict[str, list[float]] = {}
    if timer.flushes and best:  # CUDA: the same rounds again without the L2 flush
        for _ in range(max(len(r) for r in best.values())):
            for name in best:
                if results[name].error is None:
                    hot.setdefault(name, []).append(timer.time_ms(calls[name], flush=False)[0])
    for name, r in (best or {}).items():
        if results[name].error is None and r:
            results[name].measurement = Measurement(r, hot.get(name), attempts)
    return results


def copy_bandwidth(device: torch.device, timer: CpuTimer | CudaTimer, nbytes: int) -> dict:
    """Step 3: the machine's copy bandwidth, 2 x bytes / median time of dst.copy_(src)."""
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    m, _ = measure(lambda: dst.copy_(src), timer, TimingPlan(warmup=2, repeats=10, budget_s=2.0))
    moved = 2 * src.numel() * 4  # read src + write dst
    return {"GBps": moved / (m.median_ms * 1e-3) / 1e9, "bytes_moved": moved, "median_ms": m.median_ms,
            "runs_ms": m.runs_ms}


def make_timer(device: torch.device | str = "cpu") -> CpuTimer | CudaTimer:
    """The timer for a device: CUDA events on a GPU, the wall clock on the CPU."""
    device = torch.device(device)
    return CudaTimer(device) if device.type == "cuda" else CpuTimer()


def median_ms(fn: Callable[[], Any], repeats: int = 10, warmup: int = 1,
              timer: CpuTimer | CudaTimer | None = None) -> float:
    """Median time of fn() in ms over exactly `repeats` runs, after `warmup` untimed calls.

    The harness's own timing (CPU clock by default; pass ``make_timer("cuda")`` for GPU work) without
    its time budget: for notebooks and the demo, where a fixed number of runs is wanted.
    """
    plan = TimingPlan(warmup=warmup, repeats=repeats, budget_s=math.inf)
    return measure(fn, timer or CpuTimer(), plan)[0].median_ms
