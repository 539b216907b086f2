"""The atrous experiment (`python -m atrous experiment`): does a wide atrous receptive field matter?

Three variants of the small DeepLabV3+ (:func:`atrous.models.deeplabv3plus_small`) train with the same
budget: the same steps, images, augmentation, seed and learning rate.

* **atrous**: output stride 8, the last two stages dilated (rates 2 and 4) and ASPP rates (4, 8, 12);
* **no dilation**: the same network, every dilation set to 1 (:func:`atrous.models.undilate`): the
  same strides, maps and parameters, a smaller receptive field;
* **output stride 32**: no dilation needed, strides everywhere: a wide receptive field but
  features 4x coarser per side, ASPP rates (1, 2, 3).

On ContextShapes a pixel must see its object's boundary to know its class (an RF of ``2 d + 1`` at
depth ``d``; see :mod:`atrous.data.synthetic`), so the claim to test is: without dilation the large
objects suffer (their interiors are far from the boundary), at output stride 32 the small ones do
(they are a few feature pixels wide). The table reports mIoU over all pixels, then the objects'
mIoU (over the 3 object classes) on the pixels of small, medium and large objects, and the pixel
accuracy far inside objects (``d >= deep`` pixels), with each model's receptive fields: the
theoretical RF of the backbone and the side of the centred square holding half of the trained
model's effective RF (gradient mass at the centre of validation images).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..data import pad_collate
from ..metrics import ConfusionMatrix
from ..readme import replace_block
from ..receptive_field import effective_receptive_field, receptive_field
from ..training import PRESETS, TrainConfig, predict, train

__all__ = ["VARIANTS", "ExperimentRow", "Variant", "evaluate_by_size", "format_seeds_table", "format_table",
           "run_experiment", "update_readme"]


@dataclass(frozen=True)
class Variant:
    name: str
    output_stride: int
    dilated: bool


VARIANTS = (Variant("atrous", 8, True), Variant("no dilation", 8, False),
            Variant("output stride 32", 32, True))


@dataclass
class ExperimentRow:
    variant: Variant
    miou: float
    pixel_accuracy: float
    by_size: list[float]  # object mIoU on small, medium, large objects
    deep_accuracy: float  # pixel accuracy at depth >= deep
    backbone_rf: int
    erf50: int
    seconds: float
    history: list = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return {"variant": self.variant.name, "output_stride": self.variant.output_stride,
                "dilated": self.variant.dilated, "miou": self.miou, "pixel_accuracy": self.pixel_accuracy,
                "miou_small": self.by_size[0], "miou_medium": self.by_size[1], "miou_large": self.by_size[2],
                "deep_accuracy": self.deep_accuracy, "backbone_rf": self.backbone_rf, "erf50": self.erf50,
                "seconds": self.seconds}


@torch.no_grad()
def evaluate_by_size(model, dataset, num_classes: int = 4, *, deep: float = 12.0, batch_size: int = 16):
    """``(overall scores, [scores on small, medium, large objects' pixels], accuracy at depth >= deep)``.

    The per-size scores count only the pixels of objects of that size (the background is not among
    them), so their mean IoU is taken over the object classes 1 .. num_classes - 1.
    """
    model.eval()
    device = next(model.parameters()).device
    overall = ConfusionMatrix(num_classes)
    sizes = [ConfusionMatrix(num_classes) for _ in range(3)]
    deep_right = deep_total = 0
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=pad_collate):
        pred = predict(model, batch["image"].to(device)).argmax(1).cpu()  # (N, H, W)
        mask = batch["mask"]
        overall.update(pred, mask)
        for g, cm in enumerate(sizes):
            cm.update(pred, mask, mask=batch["size"] == g)
        far = batch["depth"] >= deep
        deep_right += int((pred[far] == mask[far]).sum())
        deep_total += int(far.sum())
    objects = list(range(1, num_classes))
    return (overall.scores(), [cm.scores(objects) for cm in sizes],
            deep_right / deep_total if deep_total else float("nan"))


def _receptive_fields(model, dataset, image_size: int) -> tuple[int, int]:
    report = receptive_field(model.backbone, (image_size, image_size), output="out")
    images = torch.stack([dataset[i]["image"] for i in range(min(16, len(dataset)))])  # (N, 3, H, W)
    erf = effective_receptive_field(model, images.to(next(model.parameters()).device))
    return report.output.rf[0].size, erf.side_for_mass(0.5)


def run_experiment(config=None, variants=VARIANTS, *, deep: float = 12.0, out: str | Path = "experiment-out",
                   **overrides) -> list[ExperimentRow]:
    """Train every variant with ``config`` (a :class:`~atrous.training.TrainConfig`; default: the demo
    preset) and evaluate it; writes ``OUT/experiment.md``, ``experiment.json`` and ``experiment.png``."""
    base = config.as_dict() if config is not None else dict(PRESETS["demo"], pictures=False)
    base.update(overrides)
    if base.get("dataset", "shapes") != "shapes":
        raise ValueError("run_experiment: expected the shapes dataset (its size and depth maps make the "
                         "table)")
    out = Path(out)
    rows = []
    for v in variants:
        print(f"experiment: training '{v.name}' (output stride {v.output_stride}, "
              f"{'dilated' if v.dilated else 'every dilation 1'})", flush=True)
        slug = v.name.replace(" ", "_")
        cfg = TrainConfig(**{**base, "output_stride": v.output_stride, "dilated": v.dilated,
                             "pictures": False, "out": str(out / slug)})
        start = time.perf_counter()
        result = train(cfg)
        seconds = time.perf_counter() - start
        overall, by_size, deep_acc = evaluate_by_size(result.model, result.data.val, result.data.num_classes,
                                                      deep=deep)
        rf, erf50 = _receptive_fields(result.model, result.data.val, cfg.image_size)
        rows.append(ExperimentRow(v, overall.miou, overall.pixel_accuracy, [s.miou for s in by_size],
                                  deep_acc, rf, erf50, seconds, result.history))
    table = format_table(rows, deep)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "experiment.md").write_text(table + "\n")
    (out / "experiment.json").write_text(json.dumps({"config": base, "deep": deep,
                                                     "rows": [r.as_dict() for r in rows]}, indent=1))
    plot_experiment(rows, out / "experiment.png")
    print(f"wrote {out / 'experiment.md'}, {out / 'experiment.json'}, {out / 'experiment.png'}")
    return rows


def format_table(rows: list[ExperimentRow], deep: float = 12.0) -> str:
    """The markdown table of the README."""
    def pct(x: float) -> str:
        return "-" if x != x else f"{100 * x:.1f}"

    lines = [f"| variant | output stride | backbone RF (px) | ERF 50% (px) | mIoU | small | medium | large | "
             f"acc. at depth >= {deep:g} px |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [r.variant.name, r.variant.output_stride, r.backbone_rf, r.erf50, pct(r.miou),
                 *(pct(v) for v in r.by_size), pct(r.deep_accuracy)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def plot_experiment(rows: list[ExperimentRow], path: str | Path):
    """Grouped bars: object mIoU by size, one bar per variant."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.8), layout="constrained")
    ax = fig.subplots()
    groups = ["all pixels (mIoU)", "small", "medium", "large"]
    width = 0.8 / max(1, len(rows))
    for i, r in enumerate(rows):
        values = [r.miou, *r.by_size]
        xs = [g + (i - (len(rows) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [100 * v for v in values], width, label=f"{r.variant.name} (OS {r.variant.output_stride})")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("same network, same training budget: mIoU by object size")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return fig


def format_seeds_table(seeds: list[int], runs: list[list[ExperimentRow]], deep: float = 12.0) -> str:
    """Mean (range) over seeds per variant, then each seed's mIoU: training is chaotic enough that one
    seed moves a variant's mIoU by 10 points and more."""
    def cell(values: list[float]) -> str:
        values = [100 * v for v in values if v == v]
        if not values:
            return "-"
        return f"{sum(values) / len(values):.1f} ({min(values):.1f}-{max(values):.1f})"

    lines = [f"| variant | output stride | backbone RF (px) | ERF 50% (px) | mIoU | small | medium | large | "
             f"acc. at depth >= {deep:g} px |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, first in enumerate(runs[0]):
        rows = [run[i] for run in runs]
        cells = [first.variant.name, first.variant.output_stride, first.backbone_rf,
                 "/".join(str(r.erf50) for r in rows), cell([r.miou for r in rows]),
                 *(cell([r.by_size[k] for r in rows]) for k in range(3)),
                 cell([r.deep_accuracy for r in rows])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "| seed | " + " | ".join(r.variant.name for r in runs[0]) + " |",
              "|---:|" + "---:|" * len(runs[0])]
    for seed, run in zip(seeds, runs):
        lines.append(f"| {seed} | " + " | ".join(f"{100 * r.miou:.1f}" for r in run) + " |")
    return "\n".join(lines)


def update_readme(path: str | Path, rows: list[ExperimentRow], deep: float = 12.0,
                  command: str = "", table: str | None = None) -> None:
    """Writes the table, with the command and the training time, between the README's experiment markers."""
    seconds = sum(r.seconds for r in rows)
    cmd = f"python -m atrous experiment {command}".strip()
    block = (f"Measured with `{cmd}` ({len(rows)} trainings, {seconds / 60:.0f} minutes in all):\n\n"
             + (format_table(rows, deep) if table is None else table))
    replace_block(path, block, "<!-- experiment:start -->", "<!-- experiment:end -->",
                  option="experiment --update-readme")

