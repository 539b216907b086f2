"""What a training run leaves besides checkpoints: per-epoch metrics (CSV and JSON), curves, resume checks."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

__all__ = ["format_eta", "spec_difference", "write_epoch_records"]

CSV_COLUMNS = ("epoch", "step", "train_loss", "miou", "pixel_accuracy", "seconds", "images_per_second")


def spec_difference(saved: dict, wanted: dict) -> str:
    """The fields in which two model specs differ, as "name: 'a' in the checkpoint, 'b' asked for"."""
    parts = []
    for key in sorted(set(saved) | set(wanted)):
        if saved.get(key) != wanted.get(key):
            parts.append(f"{key}: {saved.get(key)!r} in the checkpoint, {wanted.get(key)!r} asked for")
    return "; ".join(parts)


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` (``?`` before the first step has been timed)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def write_epoch_records(out: str | Path, history: Sequence[dict], losses: Sequence[Sequence[float]],
                        classes: Sequence[str]) -> list[Path]:
    """``OUT/metrics.json`` (every epoch's record, per-class IoU by class name), ``OUT/metrics.csv`` (the
    scalar columns) and ``OUT/curves.png`` (loss per step and epoch, validation mIoU). Returns the paths."""
    # Imported here: matplotlib loads only when a run writes its records, not with atrous.training.
    from ..viz.metrics_plots import plot_training_curves

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for h in history:
        record = {k: v for k, v in h.items() if k != "iou"}
        if "iou" in h:
            record["iou"] = {name: (None if isinstance(v, float) and math.isnan(v) else v)
                             for name, v in zip(classes, h["iou"])}
        records.append(record)
    (out / "metrics.json").write_text(json.dumps(records, indent=1))
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for h in history:
            writer.writerow({k: h.get(k, "") for k in CSV_COLUMNS})
    plot_training_curves(history, losses, path=out / "curves.png")
    return [out / "metrics.json", out / "metrics.csv", out / "curves.png"]
