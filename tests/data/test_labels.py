"""Your own data: RGB masks to ids with a palette, binary masks, class frequencies, class weights."""

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from atrous.cli import train as train_cli
from atrous.data import (
    SegmentationFolder,
    class_frequencies,
    median_frequency_weights,
    parse_class_weights,
    rgb_to_ids,
)
from atrous.training import load_checkpoint, segmentation_loss

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")

PALETTE = [[0, 0, 0], [200, 0, 0], [0, 200, 0]]


def test_rgb_to_ids_by_hand_and_unknown_colours():
    rgb = np.array([[[0, 0, 0], [200, 0, 0]], [[0, 200, 0], [9, 9, 9]]], dtype=np.uint8)  # (2, 2, 3)
    ids = rgb_to_ids(rgb, PALETTE, ignore_colors=[[9, 9, 9]])
    assert ids.tolist() == [[0, 1], [2, 255]] and ids.dtype == np.uint8
    with pytest.raises(ValueError, match=r"m.png: colour \(9, 9, 9\) \(first at row 1, column 1\) is not "
                                         r"in the mask palette of 3 colours"):
        rgb_to_ids(rgb, PALETTE, where="m.png")


def _folder(root, masks, mode="RGB", classes=None, split="train"):
    for k, ids in enumerate(masks):
        h, w = ids.shape
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            root / "images" / split / f"im{k}.png")
        if mode == "RGB":
            Image.fromarray(np.asarray(PALETTE, np.uint8)[ids]).save(root / "masks" / split / f"im{k}.png")
        else:  # greyscale 0/255: a binary mask as often saved
            grey = Image.fromarray((ids * 255).astype(np.uint8), mode="L")
            grey.save(root / "masks" / split / f"im{k}.png")
    if classes is not None:
        (root / "classes.json").write_text(json.dumps({"names": classes, "palette": PALETTE}))


def _masks(n=2, h=16, w=16):
    masks = []
    for k in range(n):
        ids = np.zeros((h, w), np.int64)
        ids[: 4 + 4 * k, :8] = 1  # class 1: 32 then 64 pixels
        if k == 1:
            ids[12:, 12:] = 2     # class 2: 16 pixels, only in image 1
        masks.append(ids)
    return masks


def test_folder_of_rgb_masks_with_classes_json_or_json_palette(tmp_path):
    masks = _masks()
    _folder(tmp_path, masks, classes=["bg", "a", "b"])
    with pytest.raises(ValueError, match="mode 'RGB'.*--mask-palette"):
        SegmentationFolder(tmp_path, "train")[0]
    ds = SegmentationFolder(tmp_path, "train", mask_palette="classes")
    assert [ds[i]["mask"].tolist() for i in range(2)] == [m.tolist() for m in masks]
    (tmp_path / "colours.json").write_text(json.dumps(PALETTE))
    ds = SegmentationFolder(tmp_path, "train", mask_palette=str(tmp_path / "colours.json"))
    assert torch.equal(ds[1]["mask"], torch.from_numpy(masks[1]))
    with pytest.raises(ValueError, match="expected one of binary"):
        SegmentationFolder(tmp_path, "train", mask_palette="nope")


def test_binary_masks_and_out_of_range_ids_name_file_and_value(tmp_path):
    masks = _masks(1)
    masks[0][masks[0] == 2] = 1
    _folder(tmp_path / "bin", masks, mode="L")
    ds = SegmentationFolder(tmp_path / "bin", "train", 2, mask_palette="binary")
    assert torch.equal(ds[0]["mask"], torch.from_numpy(masks[0]))
    # Without the palette, 0/255 masks read as "class 0 or ignore": every foreground pixel ignored.
    assert set(SegmentationFolder(tmp_path / "bin", "train", 2)[0]["mask"].unique().tolist()) == {0, 255}
    # Class 2's colour in a 2-class dataset: the palette maps it to id 2, out of range.
    _folder(tmp_path / "rgb", _masks(2))
    (tmp_path / "pal.json").write_text(json.dumps(PALETTE))
    ds = SegmentationFolder(tmp_path / "rgb", "train", 2, mask_palette=str(tmp_path / "pal.json"))
    with pytest.raises(ValueError, match=r"im1.png: expected class ids in \[0, 2\) or 255, found 2"):
        ds[1]


def test_class_frequencies_and_median_frequency_weights_by_hand(tmp_path):
    _folder(tmp_path, _masks(), classes=["bg", "a", "b"])
    ds = SegmentationFolder(tmp_path, "train", mask_palette="classes")
    pixels, image_pixels = class_frequencies(ds, 3)
    # image 0: 32 px of class 1, 224 of class 0; image 1: 64 of class 1, 16 of class 2, 176 of class 0.
    assert pixels.tolist() == [400, 96, 16] and image_pixels.tolist() == [512, 512, 256]
    weights = median_frequency_weights(pixels, image_pixels)
    freq = torch.tensor([400 / 512, 96 / 512, 16 / 256], dtype=torch.float64)
    torch.testing.assert_close(weights, freq[1] / freq)  # the median frequency is class 1's
    assert median_frequency_weights(torch.tensor([5, 0]), torch.tensor([10, 0])).tolist() == [1.0, 0.0]
    assert parse_class_weights("1,2.5,0", 3).tolist() == [1.0, 2.5, 0.0]
    assert parse_class_weights("auto", 3) is None
    with pytest.raises(ValueError, match="expected 'auto' or 3 non-negative numbers"):
        parse_class_weights("1,2", 3)


def test_weighted_loss_equals_torch():
    logits, masks = torch.randn(2, 3, 5, 5, dtype=torch.float64), torch.randint(0, 3, (2, 5, 5))
    w = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(segmentation_loss(logits, masks, 255, 0.5, w),
                               F.cross_entropy(logits, masks, weight=w, reduction="sum"))


def test_train_on_rgb_masks_with_auto_class_weights(tmp_path, capsys):
    _folder(tmp_path / "data", _masks(), classes=["bg", "a", "b"])
    _folder(tmp_path / "data", _masks(1), classes=["bg", "a", "b"], split="val")
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    argv = ["--dataset", "folder", "--data-root", str(tmp_path / "data"), "--mask-palette", "classes",
            "--class-weights", "auto", "--crop-size", "16", "--batch-size", "2", "--epochs", "1",
            "--no-progress", "--impl", "torch", "--out", str(tmp_path / "run")]
    assert train_cli.main(parser.parse_args(argv)) == 0
    out = capsys.readouterr().out
    assert "class frequencies" in out and "78.12%" in out  # bg: 400 of 512 labelled pixels
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    expected = median_frequency_weights(torch.tensor([400, 96, 16]), torch.tensor([512, 512, 256]))
    assert state["dataset"]["class_weights"] == pytest.approx(expected.tolist())
    argv[argv.index("auto")] = "1,2"
    assert train_cli.main(parser.parse_args(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--class-weights: expected 'auto' or 3" in err
