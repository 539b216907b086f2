"""The transfer design (`python -m atrous experiment --design transfer`): DeepLab's motive for atrous rates.

Train the small DeepLabV3+ at output stride 32 (exact dilation rule, :class:`~atrous.models.SlimXception`),
then, without retraining, evaluate the same weights three ways: at 32 as trained; at 8 with dilation
(:func:`atrous.models.set_output_stride`: the backbone computes the trained features on a 4x denser
grid, exactly); at 8 without dilation (the same, then :func:`atrous.models.undilate`: each filter now
sees a neighbourhood 4x smaller than in training). Optionally each OS-8 model is fine-tuned for a few
steps. DeepLabV3 (Table 4 of "Rethinking Atrous Convolution") trains at 16 and evaluates at 8 for +1.3
mIoU on VOC: the anchor to compare with. The predictions of :data:`TRANSFER_PREDICTIONS` were written
before any run.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..data import pad_collate
from ..inference import predict
from ..metrics import ConfusionMatrix
from ..models import set_output_stride, undilate
from ..training import TrainConfig, train
from .scoring import boundary_band
from .stats import paired, sign_test, summary, t_sf

__all__ = ["EVALUATIONS", "TRANSFER_PREDICTIONS", "TransferConfig", "format_transfer", "run_transfer",
           "score_model"]

EVALUATIONS = ("OS 32 (as trained)", "OS 8 dilated", "OS 8 undilated")


@dataclass(frozen=True)
class TransferConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    image_size: int = 96
    train_size: int = 800
    val_size: int = 100
    epochs: int = 4
    batch_size: int = 8
    lr: float = 0.1
    finetune_steps: int = 50  # per OS-8 model, SGD at lr / 10 on the training images
    threads: int = 1  # intra-op threads: see ReachConfig.threads
    workers: int = 1  # seeds trained in parallel processes


QUICK = TransferConfig(seeds=(0, 1), image_size=48, train_size=8, val_size=4, epochs=1, batch_size=4,
                       finetune_steps=2)

# (key, statement, evaluation b, metric, kind, margin): b's score minus the OS-32 one, in points.
TRANSFER_PREDICTIONS = (
    ("T1", "Dilated OS 8 keeps or improves the OS-32 model's mIoU without retraining (mean change >= -1 "
           "point).", "OS 8 dilated", "miou", "at_least", -1.0),
    ("T2", "Dilated OS 8 sharpens boundaries: boundary accuracy rises on every seed.", "OS 8 dilated",
     "boundary", "greater", 0.0),
    ("T3", "Undilated OS 8 collapses: mIoU falls by 10 points or more.", "OS 8 undilated", "miou",
     "at_most", -10.0),
)


@torch.no_grad()
def score_model(model: torch.nn.Module, dataset, num_classes: int, batch_size: int = 8) -> dict:
    """mIoU, pixel accuracy, boundary accuracy (within 2 px of a label edge) and interior accuracy."""
    model.eval()
    cm = ConfusionMatrix(num_classes)
    right = {"boundary": 0, "interior": 0}
    count = {"boundary": 0, "interior": 0}
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=pad_collate):
        pred = predict(model, batch["image"]).argmax(1).cpu()  # (N, H, W)
        mask = batch["mask"]
        cm.update(pred, mask)
        band = boundary_band(mask) & (mask != 255)
        for name, sel in (("boundary", band), ("interior", ~band & (mask != 255))):
            right[name] += int((pred[sel] == mask[sel]).sum())
            count[name] += int(sel.sum())
    scores = cm.scores()
    return {"miou": scores.miou, "pixel_accuracy": scores.pixel_accuracy,
            **{k: right[k] / count[k] if count[k] else float("nan") for k in right}}


def _finetune(model: torch.nn.Module, dataset, steps: int, lr: float, batch_size: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g, collate_fn=pad_collate)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    model.train()
    done = 0
    while done < steps:
        for batch in loader:
            loss = F.cross_entropy(model(batch["image"]), batch["mask"], ignore_index=255)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return model.eval()


def run_transfer(cfg: TransferConfig = TransferConfig(), *, out: str | Path = "experiment-out/transfer",
                 progress: bool = True) -> dict:
    """Train at OS 32 per seed, score the three evaluations (and fine-tuned OS-8 models when
    ``finetune_steps``); writes ``OUT/transfer.json``, ``transfer.md``, ``transfer.png``.
    ``cfg.workers > 1`` starts spawned processes, as :func:`atrous.experiment.reach.run_reach`
    does (a script needs the ``if __name__ == "__main__":`` guard)."""
    out = Path(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, out, progress)
    finally:
        torch.set_num_threads(threads)


def _seed_job(job: tuple[TransferConfig, Path, bool, int]) -> dict[str, dict]:
    """Train one seed at OS 32 and score every evaluation: ``{evaluation: scores}``."""
    cfg, out, progress, seed = job
    torch.set_num_threads(cfg.threads)
    print(f"transfer: training the small DeepLabV3+ at output stride 32, seed {seed}", flush=True)
    config = TrainConfig(model="deeplabv3plus_small", dataset="shapes", output_stride=32,
                         image_size=cfg.image_size, train_size=cfg.train_size, val_size=cfg.val_size,
                         epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=seed, impl="torch",
                         channels_last=False, progress=progress, pictures=False,
                         out=str(out / f"seed-{seed}"))
    result = train(config)
    model, data = result.model.cpu().eval(), result.data
    dense = set_output_stride(copy.deepcopy(model), 8)
    models = {EVALUATIONS[0]: model, EVALUATIONS[1]: dense, EVALUATIONS[2]: undilate(copy.deepcopy(dense))}
    if cfg.finetune_steps:
        for name in EVALUATIONS[1:]:
            tuned = _finetune(copy.deepcopy(models[name]), data.train, cfg.finetune_steps, cfg.lr / 10,
                              cfg.batch_size, seed)
            models[f"{name}, fine-tuned {cfg.finetune_steps} steps"] = tuned
    found = {}
    for name, m in models.items():
        found[name] = {**score_model(m, data.val, data.num_classes), "seed": seed}
        scores = found[name]
        print(f"transfer seed {seed}: {name}: mIoU {100 * scores['miou']:.1f}, boundary "
              f"{100 * scores['boundary']:.1f}, interior {100 * scores['interior']:.1f}", flush=True)
    return found


def _run(cfg: TransferConfig, out: Path, progress: bool) -> dict:
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    jobs = [(cfg, out, progress and cfg.workers == 1, seed) for seed in cfg.seeds]
    if cfg.workers == 1:
        per_seed = list(map(_seed_job, jobs))
    else:  # one spawned process per seed at a time (a fork after autograd's threads started
        # cannot run autograd); results come back in seed order
        pool = multiprocessing.get_context("spawn").Pool(cfg.workers)
        try:
            per_seed = pool.map(_seed_job, jobs)
        finally:
            pool.close()
            pool.join()
    runs: dict[str, list[dict]] = {}
    for found in per_seed:
        for name, scores in found.items():
            runs.setdefault(name, []).append(scores)
    predictions = transfer_verdicts(runs)
    results = {"design": "transfer", "config": asdict(cfg), "runs": runs, "predictions": predictions,
               "seconds": time.perf_counter() - start, "load_average": [load_before, os.getloadavg()[0]],
               "cpus": os.cpu_count()}
    (out / "transfer.json").write_text(json.dumps(results, indent=1))
    (out / "transfer.md").write_text(format_transfer(results) + "\n")
    plot_transfer(results, out / "transfer.png")
    print(format_transfer(results))
    print(f"wrote {out / 'transfer.json'}, transfer.md, transfer.png ({results['seconds'] / 60:.1f} min)")
    return results


def transfer_verdicts(runs: dict[str, list[dict]]) -> list[dict]:
    """Each of :data:`TRANSFER_PREDICTIONS` with the paired per-seed differences (evaluation minus OS 32,
    in points), one-sided p-values in the predicted direction (a fall for "at_most") and the verdict."""
    out = []
    for key, text, b, metric, kind, margin in TRANSFER_PREDICTIONS:
        p = paired([100 * r[metric] for r in runs[EVALUATIONS[0]]], [100 * r[metric] for r in runs[b]])
        sign_p, t_p = p.sign_p, p.t_p
        if kind == "at_most":  # the prediction is a fall: test b < a
            sign_p = sign_test([-d for d in p.differences])
            t_p = t_sf(-p.t, len(p.differences) - 1) if p.t == p.t else p.t_p
        held = {"at_least": p.mean >= margin, "at_most": p.mean <= margin,
                "greater": p.mean > margin and all(d > 0 for d in p.differences)}[kind]
        out.append({"key": key, "prediction": text, "b": b, "metric": metric, "kind": kind, "margin": margin,
                    **p.as_dict(), "sign_p": sign_p, "t_p": t_p, "verdict": "held" if held else "failed"})
    return out


def format_transfer(results: dict) -> str:
    """Predictions first, then mean (range) over seeds per evaluation, then the paired differences."""
    def cell(values):
        s = summary([100 * v for v in values])
        return "-" if s["n"] == 0 else f"{s['mean']:.1f} ({s['min']:.1f}-{s['max']:.1f})"

    lines = ["Predictions, written before the runs:", ""]
    lines += [f"- **{p['key']}** {p['prediction']}" for p in results["predictions"]]
    lines += ["", "| weights trained at OS 32, evaluated as | mIoU | pixel acc. | boundary acc. (<= 2 px) | "
                  "interior acc. |", "|---|---:|---:|---:|---:|"]
    for name, r in results["runs"].items():
        lines.append(f"| {name} | " + " | ".join(cell([x[k] for x in r])
                                                for k in ("miou", "pixel_accuracy", "boundary", "interior"))
                     + " |")
    lines += ["", "| prediction | comparison | per-seed differences (points) | mean | sign test p | "
                  "t-test p | verdict |", "|---|---|---|---:|---:|---:|---|"]
    for p in results["predictions"]:
        diffs = ", ".join(f"{d:+.1f}" for d in p["differences"])
        lines.append(f"| {p['key']} | {p['b']} - OS 32 ({p['metric']}) | {diffs} | {p['mean']:+.1f} | "
                     f"{p['sign_p']:.3f} | {p['t_p']:.3g} | **{p['verdict']}** |")
    cfg = results["config"]
    n = len(cfg["seeds"])
    lines += ["", f"{n} seeds; {cfg['epochs']} epochs of {cfg['train_size']} ContextShapes images "
                  f"({cfg['image_size']} px) at OS 32; {results['seconds'] / 60:.1f} minutes on "
                  f"{results['cpus']} CPUs (load average {results['load_average'][0]:.1f} at the start). "
                  f"p-values are one-sided for the predicted direction; with {n} seeds a sign test cannot "
                  f"go below {0.5 ** n:.3g}."]
    return "\n".join(lines)


def plot_transfer(results: dict, path: str | Path):
    """Bars: mIoU, boundary and interior accuracy per evaluation, seeds as dots."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    metrics = ("miou", "boundary", "interior")
    names = list(results["runs"])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        for g, k in enumerate(metrics):
            values = [100 * x[k] for x in results["runs"][name]]
            x = g + (i - (len(names) - 1) / 2) * width
            ax.bar(x, sum(values) / len(values), width, color=f"C{i}", label=name if g == 0 else None)
            ax.plot([x] * len(values), values, "k.", ms=4)
    ax.set_xticks(range(len(metrics)), ["mIoU", "boundary accuracy (<= 2 px)", "interior accuracy"])
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    ax.set_title(f"one set of weights per seed, trained at output stride 32, evaluated {len(names)} ways")
    fig.savefig(path, dpi=100)
    return fig
