"""The reach design (`python -m atrous experiment --design reach`): when a cue is far, do atrous rates help?

Four networks of :mod:`atrous.experiment.reach_model` (same parameters; rates and strides differ) train
from scratch with one budget on :class:`~atrous.experiment.reach_data.ReachShapes`, each over the same
seeds (a seed fixes the initialisation and the batch order; the images are shared), and are scored on
the object pixels by depth ``d``. The predictions of :data:`PREDICTIONS` were written before any run;
:func:`verdicts` decides each from the paired per-seed differences (one-sided sign test: with 5 seeds
all five must agree for p = 1/32 < 0.05; the paired t-test is reported beside it).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..receptive_field.arithmetic import hdc_max_distance, reachable_offsets
from .reach_data import RIM, ReachShapes
from .reach_model import REACH_VARIANTS, ReachNet
from .scoring import boundary_band, depth_bins, label_flips, size_mious
from .stats import paired, summary

__all__ = ["PREDICTIONS", "ReachConfig", "evaluate_reach", "format_reach", "run_reach", "verdicts"]

MAX_DEPTH = 20


@dataclass(frozen=True)
class ReachConfig:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    steps: int = 400
    batch_size: int = 8
    lr: float = 6e-3
    width: int = 16
    image_size: int = 64
    train_size: int = 768
    val_size: int = 128
    data_seed: int = 1
    impl: str = "torch"  # F.conv2d: the same function as the atrous kernels (tested), faster to train here
    # One intra-op thread: on a shared CPU, OpenMP threads spin against other processes (measured here:
    # 0.25 s a step with 1 thread, 3 to 6 s with 2, under a load average of 20).
    threads: int = 1
    workers: int = 1  # trainings run in parallel processes (each with `threads` threads)


QUICK = ReachConfig(seeds=(0, 1), steps=4, batch_size=4, train_size=16, val_size=8)

# (key, statement, metric, variant a, variant b, kind): "greater" holds when b > a on every seed's
# paired difference at one-sided sign-test p < 0.05 and by at least `margin` points on average;
# "equal" holds when |mean(b - a)| <= margin points.
PREDICTIONS = (
    ("P1", "Within A's reach (2 < d <= 7 px) the plain network A is as good as the hybrid B "
           "(|B - A| <= 3 points).", "acc_near", "A", "B", "equal", 3.0),
    ("P2", "Beyond A's reach (d >= 10 px) A falls towards chance and B holds: B - A >= 20 points.",
     "acc_far", "A", "B", "greater", 20.0),
    ("P3", "The equal-rate C grids: its predictions inside objects are more speckled (more label flips "
           "between neighbours) than B's.", "flips", "B", "C", "greater", 0.0),
    ("P4", "More stride instead of dilation (D) blurs boundaries: boundary accuracy (within 2 px of an "
           "edge) B > D.", "boundary", "D", "B", "greater", 0.0),
    ("P5", "D loses small objects: small-object IoU B > D.", "iou_small", "D", "B", "greater", 0.0),
    ("P6", "D still reaches far: beyond A's reach D - A >= 20 points.", "acc_far", "A", "D", "greater", 20.0),
)


def _train(variant, data: ReachShapes, cfg: ReachConfig, seed: int, progress: bool) -> ReachNet:
    torch.manual_seed(seed)
    model = ReachNet(variant, ReachShapes.num_classes, cfg.width, impl=cfg.impl)
    opt = torch.optim.Adam(model.parameters(), cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    g = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(range(cfg.steps), desc=f"reach {variant.key} seed {seed}", disable=not progress, leave=False)
    for _ in bar:
        idx = torch.randint(0, len(data), (cfg.batch_size,), generator=g)
        loss = F.cross_entropy(model(data.images[idx]), data.masks[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return model.eval()


@torch.no_grad()
def predict_reach(model: ReachNet, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """Class ids (N, H, W)."""
    return torch.cat([model(images[i:i + batch]).argmax(1) for i in range(0, len(images), batch)])


def evaluate_reach(pred: torch.Tensor, val: ReachShapes, far_from: int) -> dict:
    """Scores of one prediction: object accuracy near (RIM < d <= far_from - 2) and far (d >= far_from + 1)
    from the boundary, by depth bin, boundary and interior accuracy, IoU by size, label flips."""
    m, d = val.masks, val.depths
    obj = m > 0
    near = obj & (d > RIM) & (d <= far_from - 2)
    far = obj & (d >= far_from + 1)
    band = boundary_band(m)
    right, total = depth_bins(pred, m, d, MAX_DEPTH)
    small, medium, large = size_mious(pred, m, val.sizes, ReachShapes.num_classes)

    def acc(sel):
        return float((pred[sel] == m[sel]).float().mean()) if sel.any() else float("nan")

    return {"acc_objects": acc(obj), "acc_near": acc(near), "acc_far": acc(far), "boundary": acc(band),
            "interior": acc(~band), "iou_small": small, "iou_medium": medium, "iou_large": large,
            "flips": label_flips(pred, m), "depth_right": right, "depth_total": total}


def verdicts(runs: dict[str, list[dict]]) -> list[dict]:
    """Each prediction of :data:`PREDICTIONS` with its paired statistics and "held" or "failed"."""
    out = []
    for key, text, metric, a, b, kind, margin in PREDICTIONS:
        pa = [100 * r[metric] for r in runs[a]] if metric != "flips" else [r[metric] for r in runs[a]]
        pb = [100 * r[metric] for r in runs[b]] if metric != "flips" else [r[metric] for r in runs[b]]
        p = paired(pa, pb)
        if kind == "equal":
            held = abs(p.mean) <= margin
        else:
            held = p.mean >= margin and p.sign_p < 0.05 and p.mean > 0
        out.append({"key": key, "prediction": text, "metric": metric, "a": a, "b": b, "kind": kind,
                    "margin": margin, **p.as_dict(), "verdict": "held" if held else "failed"})
    return out


def run_reach(cfg: ReachConfig = ReachConfig(), *, out: str | Path = "experiment-out/reach",
              progress: bool = True) -> dict:
    """Train and score every variant over ``cfg.seeds``; writes ``OUT/reach.json``, ``reach.md`` and the
    figures ``reach_depth.png`` and ``reach_errors.png``. Returns the results dictionary.

    ``cfg.workers > 1`` starts spawned processes (a forked one cannot run autograd once this
    process has): a script that calls this needs Python's ``if __name__ == "__main__":`` guard;
    notebooks and ``python -m atrous experiment`` need nothing."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    b, c = REACH_VARIANTS[1], REACH_VARIANTS[2]
    # The schedules are what they claim (checked on every run, not only in the tests).
    span = reachable_offsets(b.rates)
    assert hdc_max_distance(b.rates) <= 3 and len(span) == 2 * max(span) + 1, "B must meet HDC"
    assert len(reachable_offsets(c.rates)) < 2 * max(reachable_offsets(c.rates)) + 1, "C must grid"
    params = {v.key: sum(p.numel() for p in ReachNet(v, width=cfg.width).parameters())
              for v in REACH_VARIANTS}
    assert len(set(params.values())) == 1, f"variants must have equal parameter counts, got {params}"
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, out, progress, params)
    finally:
        torch.set_num_threads(threads)


_SHARED: dict = {}  # the images and the config, for the jobs (each worker gets a copy at start)


def _init_worker(shared: dict) -> None:
    _SHARED.update(shared)


def _job(job: tuple[int, int]) -> tuple[int, int, dict, torch.Tensor]:
    i, seed = job
    cfg, train, val = _SHARED["cfg"], _SHARED["train"], _SHARED["val"]
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    model = _train(REACH_VARIANTS[i], train, cfg, seed, _SHARED["progress"])
    pred = predict_reach(model, val.images)
    scores = evaluate_reach(pred, val, REACH_VARIANTS[0].reach)
    scores.update(seed=seed, seconds=time.perf_counter() - t0)
    return i, seed, scores, pred[:4]


def _run(cfg: ReachConfig, out: Path, progress: bool, params: dict) -> dict:
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    train = ReachShapes(cfg.train_size, cfg.image_size, cfg.data_seed)
    val = ReachShapes(cfg.val_size, cfg.image_size, cfg.data_seed + 1000)
    far_from = REACH_VARIANTS[0].reach
    jobs = [(i, seed) for seed in cfg.seeds for i in range(len(REACH_VARIANTS))]
    _SHARED.update(train=train, val=val, cfg=cfg, progress=progress and cfg.workers == 1)
    found: dict[tuple[int, int], tuple[dict, torch.Tensor]] = {}
    try:
        if cfg.workers == 1:
            results_iter = map(_job, jobs)
        else:  # spawned workers (a fork after autograd's threads started cannot run autograd)
            pool = multiprocessing.get_context("spawn").Pool(cfg.workers, _init_worker, (dict(_SHARED),))
            results_iter = pool.imap_unordered(_job, jobs)
        for done, (i, seed, scores, examples_i) in enumerate(results_iter, 1):
            found[i, seed] = scores, examples_i
            print(f"reach [{done}/{len(jobs)}] {REACH_VARIANTS[i].name} seed {seed}: "
                  f"objects {100 * scores['acc_objects']:.1f}%, "
                  f"far (d >= {far_from + 1}) {100 * scores['acc_far']:.1f}% ({scores['seconds']:.0f} s)",
                  flush=True)
        if cfg.workers != 1:
            pool.close()
            pool.join()
    finally:
        _SHARED.clear()
    runs = {v.key: [found[i, seed][0] for seed in cfg.seeds] for i, v in enumerate(REACH_VARIANTS)}
    examples = {v.key: found[i, cfg.seeds[0]][1] for i, v in enumerate(REACH_VARIANTS)}
    seconds = time.perf_counter() - start
    results = {"design": "reach", "config": asdict(cfg), "far_from": far_from, "max_depth": MAX_DEPTH,
               "variants": [{"key": v.key, "name": v.name, "rates": v.rates, "strides": v.strides,
                             "rf": v.rf, "reach": v.reach, "output_stride": v.output_stride,
                             "params": params[v.key]}
                            for v in REACH_VARIANTS],
               "runs": runs, "predictions": verdicts(runs), "seconds": seconds,
               "load_average": [load_before, os.getloadavg()[0]], "cpus": os.cpu_count()}
    (out / "reach.json").write_text(json.dumps(results, indent=1))
    (out / "reach.md").write_text(format_reach(results) + "\n")
    plot_reach_depth(results, out / "reach_depth.png")
    plot_reach_errors(val, examples, out / "reach_errors.png")
    print(format_reach(results))
    print(f"wrote {out / 'reach.json'}, reach.md, reach_depth.png, reach_errors.png ({seconds / 60:.1f} min)")
    return results


def _cell(values: list[float], scale: float = 100.0) -> str:
    s = summary([scale * v for v in values])
    return "-" if s["n"] == 0 else f"{s['mean']:.1f} ({s['min']:.1f}-{s['max']:.1f})"


def format_reach(results: dict) -> str:
    """Predictions (as written before the runs), the table (mean (range) over seeds), the paired tests."""
    far = results["far_from"]
    lines = ["Predictions, written before the runs:", ""]
    lines += [f"- **{p['key']}** {p['prediction']}" for p in results["predictions"]]
    lines += ["", f"| variant | RF (px) | reach (RF-1)/2 | output stride | params | object acc. | "
                  f"acc. {RIM} < d <= {far - 2} | acc. d >= {far + 1} | boundary acc. | interior acc. | "
                  f"IoU small | IoU medium | IoU large | label flips (%) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v in results["variants"]:
        r = results["runs"][v["key"]]
        cells = [v["name"], v["rf"], v["reach"], v["output_stride"], v["params"],
                 *(_cell([x[k] for x in r]) for k in ("acc_objects", "acc_near", "acc_far", "boundary",
                                                     "interior", "iou_small", "iou_medium", "iou_large")),
                 _cell([x["flips"] for x in r], 1.0)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "| prediction | comparison | per-seed differences | mean | sign test p | t-test p | "
                  "verdict |",
              "|---|---|---|---:|---:|---:|---|"]
    for p in results["predictions"]:
        diffs = ", ".join(f"{d:+.1f}" for d in p["differences"])
        lines.append(f"| {p['key']} | {p['b']} - {p['a']} ({p['metric']}) | {diffs} | {p['mean']:+.1f} | "
                     f"{p['sign_p']:.3f} | {p['t_p']:.3g} | **{p['verdict']}** |")
    cfg = results["config"]
    lines += ["", f"{len(cfg['seeds'])} seeds x {len(results['variants'])} variants, {cfg['steps']} steps "
                  f"of {cfg['batch_size']} images ({cfg['image_size']} px) each; "
                  f"{results['seconds'] / 60:.1f} minutes on {results['cpus']} CPUs "
                  f"(load average {results['load_average'][0]:.1f} at the start). "
                  "p-values are one-sided (the predicted direction)."]
    return "\n".join(lines)


def plot_reach_depth(results: dict, path: str | Path):
    """Object-pixel accuracy against depth, mean and range over seeds, with each variant's reach."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    depths = list(range(results["max_depth"] + 1))
    for i, v in enumerate(results["variants"]):
        colour = f"C{i}"
        curves = [[r / t if t else float("nan") for r, t in zip(x["depth_right"], x["depth_total"])]
                  for x in results["runs"][v["key"]]]
        mean = [sum(c[d] for c in curves) / len(curves) for d in depths]
        ax.plot([d + 0.5 for d in depths], [100 * m for m in mean], color=colour, label=v["name"], lw=2)
        ax.fill_between([d + 0.5 for d in depths], [100 * min(c[d] for c in curves) for d in depths],
                        [100 * max(c[d] for c in curves) for d in depths], color=colour, alpha=0.15)
        if v["reach"] <= results["max_depth"] + 1:
            ax.axvline(v["reach"], color=colour, ls=":", lw=1.5)
        else:
            ax.annotate(f"{v['key']}: reach {v['reach']} px ->", (results["max_depth"] + 1, 8 + 6 * i),
                        ha="right", color=colour, fontsize=8)
    ax.axhline(100 / 3, color="grey", ls="--", lw=1)
    ax.text(0.3, 100 / 3 + 1.5, "chance among the 3 object classes", color="grey", fontsize=8)
    ax.set_xlim(0, results["max_depth"] + 1)
    ax.set_ylim(0, 102)
    ax.set_xlabel("depth d: distance to the object's boundary (px); dotted: each variant's reach (RF-1)/2")
    ax.set_ylabel("object-pixel accuracy (%)")
    seeds = len(results["config"]["seeds"])
    ax.set_title(f"ReachShapes: accuracy by depth, mean and range over {seeds} seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.savefig(path, dpi=100)
    return fig


_COLOURS = torch.tensor([(0, 0, 0), (230, 30, 30), (30, 200, 30), (40, 40, 230)], dtype=torch.float32) / 255


def plot_reach_errors(val: ReachShapes, examples: dict[str, torch.Tensor], path: str | Path, rows: int = 3):
    """Per validation image: the image, the truth, each variant's prediction with its errors in white."""
    from matplotlib.figure import Figure

    rows = min(rows, len(val), *(len(p) for p in examples.values()))
    cols = 2 + len(examples)
    fig = Figure(figsize=(1.9 * cols, 1.9 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    names = {v.key: v.name for v in REACH_VARIANTS}
    for i in range(rows):
        panels = [("image", val.images[i].permute(1, 2, 0)), ("truth", _COLOURS[val.masks[i]])]
        for key, pred in examples.items():
            picture = _COLOURS[pred[i]].clone()  # (H, W, 3)
            picture[pred[i] != val.masks[i]] = 1.0
            panels.append((names[key], picture))
        for ax, (title, picture) in zip(axes[i], panels):
            ax.imshow(picture.numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
    fig.suptitle("errors in white (first seed)", fontsize=9)
    fig.savefig(path, dpi=100)
    return fig
