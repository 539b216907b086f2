"""`segment --weights torchvision:NAME=PATH`: imported weights, torchvision's normalisation and VOC names."""

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from atrous.cli import segment as segment_cli
from atrous.data.transforms import IMAGENET_MEAN, IMAGENET_STD

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")

segmentation = pytest.importorskip("torchvision.models.segmentation",
                                   reason="torchvision is a test dependency: pip install torchvision")


def run(*argv):
    parser = argparse.ArgumentParser()
    segment_cli.add_arguments(parser)
    return segment_cli.main(parser.parse_args([str(a) for a in argv]))


def test_segment_with_torchvision_weights_matches_torchvision(tmp_path, capsys):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    torch.manual_seed(0)
    tv = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21,
                                                   aux_loss=True).eval()
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    spec = f"torchvision:deeplabv3_mobilenet_v3_large={tmp_path / 'tv.pth'}"
    assert run(tmp_path / "photo.png", "--weights", spec, "--impl", "torch", "--out", tmp_path / "seg") == 0
    printed = capsys.readouterr().out
    ids = np.asarray(Image.open(tmp_path / "seg" / "photo_mask.png"))
    # torchvision's own forward on the ImageNet-normalised image.
    x = torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255  # (1, 3, H, W)
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        want = tv(x)["out"].argmax(1)[0].numpy()
    assert np.array_equal(ids, want)
    top = int(np.bincount(want.reshape(-1), minlength=21).argmax())
    voc = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
           "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
           "train", "tvmonitor"]
    assert "photo.png: 56x40 -> " in printed and voc[top] in printed  # VOC class names


def test_segment_weights_errors(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "p.png")
    torch.manual_seed(0)
    tv = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    cases = [
        (["--weights", f"torchvision:deeplabv3_resnet50={tmp_path / 'tv.pth'}"],
         "holds a torchvision deeplabv3_mobilenet_v3_large state dict, not deeplabv3_resnet50"),
        (["--weights", "deeplabv3_resnet50.pth"], "expected one of torchvision:deeplabv3_resnet50=PATH"),
        (["--weights", f"torchvision:deeplabv3_resnet50={tmp_path / 'none.pth'}"], "no weights file"),
        (["--weights", "torchvision:deeplabv3_resnet50=x", "--checkpoint", "c.pt"], "exclude each other"),
    ]
    for extra, message in cases:
        assert run(tmp_path / "p.png", *extra, "--out", tmp_path / "o") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
