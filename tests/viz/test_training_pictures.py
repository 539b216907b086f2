"""Pictures of a trained model (atrous.training.report): predictions, IoU, errors, overlays, history."""

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from atrous.data import ContextShapes
from atrous.data.palettes import CONTEXT_SHAPES_PALETTE
from atrous.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from atrous.training.report import error_map, image_iou, plot_history, plot_predictions

matplotlib.use("Agg")


class Constant(torch.nn.Module):
    """Predicts class ``k`` everywhere (a model whose IoU is known by hand)."""

    def __init__(self, k, classes=4):
        super().__init__()
        self.k, self.classes, self.p = k, classes, torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], self.classes, *x.shape[-2:])
        logits[:, self.k] = 1
        return logits  # (N, K, H, W)


def test_image_iou_and_error_map_by_hand():
    truth = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = torch.tensor([[0, 0, 1, 0], [0, 0, 0, 2]])
    # background: 4 right, union 4 + 2 wrong = 6 -> 4/6; class 1: 1 right, union 3 -> 1/3; class 2 never
    # counted (its only pixel is ignored)
    assert image_iou(pred, truth, 3) == pytest.approx((4 / 6 + 1 / 3) / 2)
    rgb = np.full((2, 4, 3), 128, np.uint8)
    errors = error_map(rgb, pred, truth)
    assert errors[0, 3].tolist() == [0, 0, 0] and errors[1, 2].tolist() == [0, 0, 0]  # wrong: black
    assert errors[1, 3].tolist() == [255, 255, 255]  # ignored: white
    assert errors[0, 0].tolist() == [170, 170, 170]  # right: light grey


def test_predictions_show_iou_errors_and_a_legend(tmp_path):
    data = ContextShapes(2, 48, seed=3)
    classes = data.classes
    fig = plot_predictions(Constant(0), data, classes, CONTEXT_SHAPES_PALETTE, IMAGENET_MEAN, IMAGENET_STD,
                           count=2, path=tmp_path / "p.png", overlay_dir=tmp_path / "over")
    assert Image.open(tmp_path / "p.png").format == "PNG"
    for i in range(2):
        truth = data[i]["mask"]
        want = image_iou(torch.zeros_like(truth), truth, 4)
        (ax,) = [a for a in fig.axes if a.get_gid() == f"prediction-{i}"]
        assert f"IoU {100 * want:.0f}%" in ax.get_title() and want < 0.5  # background everywhere: poor
        row = fig.axes[4 * i:4 * i + 4]
        errors = row[3].images[0].get_array()
        wrong = (truth != 0) & (truth != 255)
        assert (np.asarray(errors)[wrong.numpy()] == 0).all()
        with Image.open(tmp_path / "over" / f"val_{i}.png") as over:
            assert min(over.size) >= 384  # readable, not the 48-pixel raw blend
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [*classes, "wrong pixel", "ignored (not scored)"]
    # every legend entry has a visible swatch
    assert all(h.get_facecolor()[3] > 0 for h in legend.legend_handles)


def test_history_plots_loss_and_miou_per_epoch_on_their_own_axes(tmp_path):
    history = [{"epoch": 1, "train_loss": 1.2, "miou": 0.2}, {"epoch": 2, "train_loss": 0.8},
               {"epoch": 3, "train_loss": 0.5, "miou": 0.6}]
    fig = plot_history(history, tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 0
    ax_loss, ax_miou = fig.axes
    (loss,) = ax_loss.lines
    (miou,) = ax_miou.lines
    assert list(loss.get_xdata()) == [1, 2, 3] and list(miou.get_xdata()) == [1, 3]
    assert list(miou.get_ydata()) == [20, 60]
    assert ax_loss.get_xlabel() == ax_miou.get_xlabel() == "epoch"
    assert "%" in ax_miou.get_ylabel() and ax_loss.get_ylabel()
    with pytest.raises(ValueError, match="history"):
        plot_history([])
