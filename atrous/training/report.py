"""Pictures of a trained model: validation overlays (image, truth, prediction) and its effective RF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..inference import predict
from ..receptive_field import effective_receptive_field
from ..viz import colorize, overlay, plot_erf
from .loop import TrainResult

__all__ = ["draw_pictures", "plot_predictions"]


def _denormalise(image: torch.Tensor, mean, std) -> np.ndarray:
    x = image.cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]  # (3, H, W)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, 3)


def plot_predictions(model: nn.Module, dataset, classes, palette, mean, std, *, count: int = 6,
                     path: str | Path | None = None, overlay_dir: str | Path | None = None):
    """A figure with one row per validation image: the image, the true and the predicted classes, and the
    prediction over the image. With ``overlay_dir``, each overlay is also written there as ``val_<i>.png``."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    palette = np.asarray(palette, np.uint8)
    count = min(count, len(dataset))
    fig = Figure(figsize=(9, 2.4 * count), layout="constrained")
    axes = fig.subplots(count, 4, squeeze=False)
    device = next(model.parameters()).device
    for i in range(count):
        sample = dataset[i]
        pred = predict(model, sample["image"][None].to(device)).argmax(1)[0].cpu()  # (H, W)
        rgb = _denormalise(sample["image"], mean, std)
        truth = sample["mask"]
        correct = ((pred == truth) | (truth == 255)).float().mean().item()
        clear = (0,) if classes[0] == "background" else ()  # the background stays as it is
        over_path = None if overlay_dir is None else Path(overlay_dir) / f"val_{i}.png"
        # written when given a path
        over = overlay(rgb, pred, palette, 0.6, transparent=clear, path=over_path)
        panels = [(rgb, "image"), (colorize(truth, palette), "truth"),
                  (colorize(pred, palette), f"prediction: {100 * correct:.0f}% right"), (over, "overlay")]
        for ax, (picture, title) in zip(axes[i], panels):
            ax.imshow(picture)
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Patch(color=np.asarray(c) / 255, label=name) for name, c in zip(classes, palette)]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(classes), fontsize=8)
    fig.suptitle("validation images: true and predicted classes")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
    return fig


def draw_pictures(result: TrainResult, out: str | Path | None = None, count: int = 6) -> list[Path]:
    """``predictions.png`` (validation images with true and predicted classes; each overlay also under
    ``overlays/``) and ``erf.png``: the trained model's effective receptive field at the centre of 8
    validation images, drawn beside them (dimmed, grey), with the square that holds half of the gradient (the
    theoretical RF of a DeepLab model covers the image: ASPP's image pooling sees everything). Returns the
    paths written."""
    out = Path(out or result.config.out)
    data = result.data
    model = result.model.eval()
    written = []
    path = out / "predictions.png"
    plot_predictions(model, data.val, data.classes, data.palette, data.mean, data.std, count=count, path=path,
                     overlay_dir=out / "overlays")
    written += [path, out / "overlays"]
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
