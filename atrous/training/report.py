"""Pictures of a trained model: validation predictions with IoU and errors, overlays, history, its ERF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..inference import predict
from ..metrics import confusion_matrix
from ..receptive_field import effective_receptive_field
from ..viz import colorize, overlay, plot_erf
from ..viz.theme import OKABE_ITO, save
from .loop import TrainResult

__all__ = ["draw_pictures", "error_map", "image_iou", "plot_history", "plot_predictions"]


def _denormalise(image: torch.Tensor, mean, std) -> np.ndarray:
    x = image.cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]  # (3, H, W)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, 3)


def image_iou(pred: torch.Tensor, truth: torch.Tensor, num_classes: int, ignore_index: int = 255) -> float:
    """Mean IoU of one image over the classes that occur in its truth or its prediction (pixel accuracy
    is dominated by the background; this is not)."""
    cm = confusion_matrix(pred, truth, num_classes, ignore_index=ignore_index).double()
    union = cm.sum(0) + cm.sum(1) - cm.diag()
    present = union > 0
    return float((cm.diag()[present] / union[present]).mean()) if present.any() else float("nan")


def error_map(rgb: np.ndarray, pred: torch.Tensor, truth: torch.Tensor,
              ignore_index: int = 255) -> np.ndarray:
    """``(H, W, 3)`` uint8: the image dimmed to light grey, wrong pixels black, ignored pixels white."""
    grey = 170 + 0.3 * (np.asarray(rgb, np.float64).mean(-1) - 128)  # (H, W), light and flat
    out = np.repeat(np.clip(grey, 0, 255)[..., None], 3, axis=2).astype(np.uint8)
    truth, pred = np.asarray(truth), np.asarray(pred)
    out[(pred != truth) & (truth != ignore_index)] = 0
    out[truth == ignore_index] = 255
    return out


def _class_handles(classes, palette):
    from matplotlib.patches import Patch  # imported here: matplotlib only when drawing

    return [Patch(facecolor=np.asarray(c) / 255, edgecolor="#666666", label=name)
            for name, c in zip(classes, palette)]


def _write_overlay(over: np.ndarray, classes, palette, path: Path, title: str) -> None:
    """One validation overlay as a PNG large enough to read (at least 384 px), with the class legend."""
    from matplotlib.figure import Figure  # imported here: matplotlib only when drawing

    fig = Figure(figsize=(5, 5.6), layout="constrained")
    ax = fig.subplots()
    ax.imshow(over, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.legend(handles=_class_handles(classes, palette), loc="outside lower center", ncols=len(classes),
               fontsize=9, frameon=False)
    save(fig, path, dpi=100)


def plot_predictions(model: nn.Module, dataset, classes, palette, mean, std, *, count: int = 6,
                     path: str | Path | None = None, overlay_dir: str | Path | None = None):
    """A figure with one row per validation image: the image, the true classes, the prediction titled with
    the image's IoU (mean over the classes present) and pixel accuracy, and the error map (wrong pixels
    black). With ``overlay_dir``, the prediction over each image is also written there as
    ``val_<i>.png``, with the class legend."""
    from matplotlib.figure import Figure  # imported here: matplotlib only when drawing
    from matplotlib.patches import Patch

    palette = np.asarray(palette, np.uint8)
    count = min(count, len(dataset))
    fig = Figure(figsize=(9, 2.4 * count + 0.6), layout="constrained")
    axes = fig.subplots(count, 4, squeeze=False)
    device = next(model.parameters()).device
    for i in range(count):
        sample = dataset[i]
        pred = predict(model, sample["image"][None].to(device)).argmax(1)[0].cpu()  # (H, W)
        rgb = _denormalise(sample["image"], mean, std)
        truth = sample["mask"]
        correct = ((pred == truth) | (truth == 255)).float().mean().item()
        iou = image_iou(pred, truth, len(classes))
        panels = [(rgb, "image"), (colorize(truth, palette), "truth"),
                  (colorize(pred, palette), f"prediction: IoU {100 * iou:.0f}%\n"
                                            f"({100 * correct:.0f}% of pixels right)"),
                  (error_map(rgb, pred, truth), "errors (black)")]
        for ax, (picture, title) in zip(axes[i], panels):
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 2].set_gid(f"prediction-{i}")
        if overlay_dir is not None:
            clear = (0,) if classes[0] == "background" else ()  # the background stays as it is
            over = overlay(rgb, pred, palette, 0.6, transparent=clear)
            _write_overlay(over, classes, palette, Path(overlay_dir) / f"val_{i}.png",
                           f"validation image {i}: prediction, IoU {100 * iou:.0f}%")
    handles = _class_handles(classes, palette) + [
        Patch(facecolor="black", label="wrong pixel"),
        Patch(facecolor="white", edgecolor="#666666", label="ignored (not scored)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=9)
    fig.suptitle("validation images: true and predicted classes, per-image IoU, errors")
    save(fig, path, dpi=90)
    return fig


def plot_history(history: list[dict], path: str | Path | None = None):
    """Training loss and validation mIoU per epoch, each on its own axes over the same epochs."""
    from matplotlib.figure import Figure  # imported here: matplotlib only when drawing
    from matplotlib.ticker import MaxNLocator

    if not history:
        raise ValueError("history: expected at least one epoch record, got none")
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax_loss, ax_miou = fig.subplots(1, 2, sharex=True)
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", color=OKABE_ITO[3],
                 label="mean training loss of the epoch", gid="loss")
    ax_loss.set_ylabel("cross-entropy loss (nats per pixel)")
    scored = [h for h in history if h.get("miou") is not None]
    ax_miou.plot([h["epoch"] for h in scored], [100 * h["miou"] for h in scored], marker="s",
                 color=OKABE_ITO[0], label="validation mIoU", gid="miou")
    ax_miou.set_ylabel("validation mIoU (%)")
    for ax in (ax_loss, ax_miou):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle("training history, one point per epoch")
    save(fig, path)
    return fig


def draw_pictures(result: TrainResult, out: str | Path | None = None, count: int = 6) -> list[Path]:
    """``predictions.png`` (validation images with true and predicted classes, IoU and errors; each
    overlay also under ``overlays/``), ``history.png`` (loss and mIoU per epoch) and ``erf.png``: the
    trained model's effective receptive field at the centre of 8 validation images, drawn beside them
    (dimmed, grey), with the square that holds half of the gradient (the theoretical RF of a DeepLab
    model covers the image: ASPP's image pooling sees everything). Returns the paths written."""
    out = Path(out or result.config.out)
    data = result.data
    model = result.model.eval()
    written = []
    path = out / "predictions.png"
    plot_predictions(model, data.val, data.classes, data.palette, data.mean, data.std, count=count, path=path,
                     overlay_dir=out / "overlays")
    written += [path, out / "overlays"]
    if result.history:
        path = out / "history.png"
        plot_history(result.history, path)
        written.append(path)
    images = torch.stack([data.val[i]["image"] for i in range(min(8, len(data.val)))])  # (N, 3, H, W)
    device = next(model.parameters()).device
    erf = effective_receptive_field(model, images.to(device))
    path = out / "erf.png"
    name = f"{result.config.model}, output stride {result.config.output_stride}" + \
        ("" if result.config.dilated else ", no dilation")
    shown = np.stack([_denormalise(im, data.mean, data.std) for im in images])  # (N, H, W, 3)
    plot_erf({name: erf}, image=shown, mass=0.5, path=path)
    written.append(path)
    return written
