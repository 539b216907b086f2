"""Pictures of scores: the confusion matrix of an evaluation, the loss and mIoU curves of a training run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .common import PathLike, _save

__all__ = ["plot_confusion_matrix", "plot_training_curves"]


def plot_confusion_matrix(matrix, class_names: Sequence[str] | None = None, *, path: PathLike = None,
                          title: str = "confusion matrix") -> Figure:
    """Rows (true class) normalised to fractions, so each row reads "where this class's pixels went";
    the cells carry percentages when there are at most 25 classes. ``matrix``: (K, K) counts."""
    m = torch.as_tensor(matrix).double().numpy()
    k = m.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    rows = m.sum(1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    side = min(14.0, 2.5 + 0.45 * k)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class's pixels")
    ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(j, i, f"{100 * frac[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.5 else "black")
    return _save(fig, path)


def plot_training_curves(history: Sequence[dict], losses: Sequence[Sequence[float]] | None = None, *,
                         path: PathLike = None) -> Figure:
    """Training loss (per step if ``losses`` [step, loss, lr] are given, and per epoch) and validation
    mIoU per epoch, from a training run's ``history`` records."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax_loss, ax_miou = fig.subplots(1, 2)
    if losses:
        steps = [s for s, _, _ in losses]
        ax_loss.plot(steps, [v for _, v, _ in losses], color="#9ecae1", lw=0.8, label="step")
    ax_loss.plot([h["step"] for h in history], [h["train_loss"] for h in history], "o-", color="#1f5f99",
                 label="epoch mean")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_loss.legend(frameon=False)
    scored = [h for h in history if h.get("miou") is not None]
    ax_miou.plot([h["epoch"] for h in scored], [100 * h["miou"] for h in scored], "o-", color="#138d90")
    ax_miou.set_xlabel("epoch")
    ax_miou.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_miou.set_ylabel("validation mIoU (%)")
    if history:
        ax_miou.set_xlim(0.5, max(h["epoch"] for h in history) + 0.5)
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
    return _save(fig, path)
