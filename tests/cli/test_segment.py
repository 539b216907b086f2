"""Inference: segment(), the `segment` command (and its refusal without weights), overlays, palettes."""

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from atrous.cli import segment as segment_cli
from atrous.data.palettes import (
    CITYSCAPES_PALETTE,
    CONTEXT_SHAPES_PALETTE,
    VOC_CLASSES,
    VOC_PALETTE,
    voc_palette,
)
from atrous.data.synthetic import RIM_COLOURS
from atrous.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from atrous.inference import segment
from atrous.training import TrainConfig, train
from atrous.viz import colorize, overlay

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")


class RedDetector(torch.nn.Module):
    """Class 1 where the normalised red channel is above its mean (red > 0.485 before normalising)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(50.0))

    def forward(self, x):
        red = x[:, 0]
        return torch.stack([-red, red], 1) * self.scale  # (N, 2, H, W)


def _image(h=6, w=8):
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2, 0] = 200  # red on the left half
    return rgb


def test_segment_accepts_every_image_form_and_normalises():
    rgb = _image()
    want = np.zeros((6, 8), np.int64)
    want[:, :4] = 1
    model = RedDetector().train()
    forms = [rgb, Image.fromarray(rgb), torch.from_numpy(rgb).permute(2, 0, 1),
             torch.from_numpy(rgb).permute(2, 0, 1).float() / 255]
    for form in forms:
        mask = segment(model, form)
        assert mask.shape == (6, 8) and mask.dtype == torch.int64
        assert np.array_equal(mask.numpy(), want)
    assert model.training  # restored
    batch = torch.from_numpy(np.stack([rgb, rgb[:, ::-1]])).permute(0, 3, 1, 2)  # (2, 3, H, W)
    masks = segment(model, batch, flip=True, scales=(1.0, 2.0))
    assert masks.shape == (2, 6, 8) and np.array_equal(masks[1].numpy(), want[:, ::-1])
    # with mean 0.9 for red, 200/255 = 0.78 is below the mean: nothing is class 1
    assert segment(model, rgb, mean=(0.9, *IMAGENET_MEAN[1:]), std=IMAGENET_STD).sum() == 0
    with pytest.raises(ValueError, match=r"\(H, W, 3\) image array"):
        segment(model, np.zeros((4, 4)))
    with pytest.raises(TypeError, match="nn.Module"):
        segment(lambda x: x, rgb)


def run(*argv):
    parser = argparse.ArgumentParser()
    segment_cli.add_arguments(parser)
    return segment_cli.main(parser.parse_args([str(a) for a in argv]))


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def test_segment_without_weights_refuses(tmp_path, image_file, capsys):
    assert run(image_file, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "no weights" in err and "--checkpoint" in err and "--random-init" in err
    assert not (tmp_path / "out").exists()
    assert run(image_file, "--random-init", "--checkpoint", tmp_path / "x.pt") == 2
    assert "exclude each other" in capsys.readouterr().err
    assert run(tmp_path / "missing.png", "--random-init") == 2
    assert "no such image file" in capsys.readouterr().err
    assert run(image_file, "--checkpoint", tmp_path / "missing.pt") == 2
    assert "no checkpoint file" in capsys.readouterr().err


def test_segment_random_init_writes_palette_masks_and_overlays(tmp_path, image_file, capsys):
    assert run(image_file, "--random-init", "--palette", "cityscapes", "--out", tmp_path) == 0
    assert "untrained" in capsys.readouterr().err
    mask = Image.open(tmp_path / "street_mask.png")
    assert mask.mode == "P" and mask.size == (56, 40)
    colours = np.asarray(mask.getpalette()[: 3 * 19]).reshape(19, 3)
    assert np.array_equal(colours, CITYSCAPES_PALETTE)
    assert np.asarray(mask).max() < 19
    assert Image.open(tmp_path / "street_overlay.png").size == (56, 40)


def test_segment_with_a_trained_checkpoint_matches_the_python_api(tmp_path, image_file, capsys):
    result = train(TrainConfig(image_size=48, train_size=8, val_size=2, batch_size=4, epochs=1,
                               progress=False, out=str(tmp_path / "run")))
    assert run(image_file, "--checkpoint", tmp_path / "run" / "last.pt", "--out", tmp_path / "seg") == 0
    printed = capsys.readouterr().out
    assert "street.png: 56x40 ->" in printed and "background" in printed  # the checkpoint's class names
    ids = np.asarray(Image.open(tmp_path / "seg" / "street_mask.png"))
    want = segment(result.model, image_file)
    assert np.array_equal(ids, want.numpy())
    mask = Image.open(tmp_path / "seg" / "street_mask.png")
    assert np.asarray(mask.getpalette()[:12]).reshape(4, 3)[1].tolist() == [230, 159, 0]  # Okabe-Ito orange


def test_overlay_blends_class_colours():
    rgb = np.full((2, 3, 3), 100, np.uint8)
    mask = np.array([[0, 1, 255], [2, 1, 0]])
    assert np.array_equal(overlay(rgb, mask, "voc", alpha=0.0), rgb)
    full = overlay(rgb, mask, "voc", alpha=1.0)
    assert full[0, 1].tolist() == [128, 0, 0] and full[1, 0].tolist() == [0, 128, 0]
    assert full[0, 2].tolist() == [100, 100, 100]  # ignore: untouched
    half = overlay(rgb, mask, "voc", alpha=0.5, transparent=(0,))
    assert half[0, 0].tolist() == [100, 100, 100] and half[0, 1].tolist() == [114, 50, 50]
    as_tensors = overlay(torch.full((3, 2, 3), 100 / 255), torch.tensor(mask), "voc", 0.5, transparent=(0,))
    assert np.array_equal(as_tensors, half)
    assert colorize(mask, "voc")[0, 2].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="mask of the image's size"):
        overlay(rgb, np.zeros((3, 3), np.int64))
    with pytest.raises(ValueError, match="palette"):
        overlay(rgb, mask, "pascal")


def test_palettes():
    assert len(VOC_CLASSES) == len(VOC_PALETTE) == 21
    assert VOC_PALETTE[1].tolist() == [128, 0, 0] and VOC_PALETTE[15].tolist() == [192, 128, 128]
    assert voc_palette(256)[255].tolist() == [224, 224, 192]  # the VOC boundary colour
    assert CITYSCAPES_PALETTE.shape == (19, 3) and CITYSCAPES_PALETTE[0].tolist() == [128, 64, 128]


def test_shapes_palette_differs_from_the_rim_colours_and_survives_colour_blindness():
    classes = CONTEXT_SHAPES_PALETTE[1:].astype(float)
    rims = np.asarray(RIM_COLOURS, float)
    # every class colour is far from every rim colour drawn in the images
    assert np.linalg.norm(classes[:, None] - rims[None], axis=-1).min() > 100
    # deuteranopia and protanopia (Vienot et al., 1999, in linear RGB) keep the classes apart
    lin = (classes / 255) ** 2.2
    for sim in (np.array([[0.29275, 0.70725, 0], [0.29275, 0.70725, 0], [-0.02234, 0.02234, 1]]),
                np.array([[0.11238, 0.88762, 0], [0.11238, 0.88762, 0], [0.00401, -0.00401, 1]])):
        seen = np.clip(lin @ sim.T, 0, 1) ** (1 / 2.2) * 255
        dist = np.linalg.norm(seen[:, None] - seen[None], axis=-1)
        assert dist[~np.eye(3, dtype=bool)].min() > 40


def test_package_level_segment_and_train_load_on_first_use():
    """`import atrous` stays light (no torch); atrous.segment / atrous.train import their modules on use."""
    import subprocess
    import sys

    code = ("import sys, atrous; "
            "assert 'torch' not in sys.modules and 'atrous.inference' not in sys.modules; "
            "from atrous.inference import segment; from atrous.training import train; "
            "assert atrous.segment is segment and atrous.train is train; print('ok')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "ok", run.stderr[-2000:]
