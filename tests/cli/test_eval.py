"""`python -m atrous eval`: a tiny generated VOC tree, an atrous checkpoint, imported torchvision weights."""

import json

import numpy as np
import pytest
import torch

from atrous.__main__ import main as atrous_main
from atrous.data import VOCSegmentation
from atrous.data import transforms as T
from atrous.inference import predict
from atrous.metrics import confusion_matrix
from atrous.training import ModelSpec, build_model, save_checkpoint

from helpers.datasets import voc_tree

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")


def _checkpoint(tmp_path, num_classes=21):
    torch.manual_seed(0)
    spec = ModelSpec("deeplabv3plus_small", num_classes, 16)
    model = build_model(spec, "torch")
    return save_checkpoint(tmp_path / "model.pt", model=model, spec=spec), model.eval()


def _expected_matrix(model, root, scales=(1.0,), flip=False):
    ds = VOCSegmentation(root, "val", transform=T.eval_transform())
    total = torch.zeros(21, 21, dtype=torch.long)
    for i in range(len(ds)):
        sample = ds[i]
        pred = predict(model, sample["image"][None], scales, flip).argmax(1)  # (1, H, W)
        total += confusion_matrix(pred, sample["mask"][None], 21)
    return total


def test_eval_checkpoint_on_a_voc_tree_writes_report_and_png(tmp_path, capsys):
    labels = voc_tree(tmp_path / "data")
    ckpt, model = _checkpoint(tmp_path)
    out = tmp_path / "eval"
    argv = ["eval", "--checkpoint", str(ckpt), "--dataset", "voc", "--data-root", str(tmp_path / "data"),
            "--scales", "0.75,1", "--flip", "--impl", "torch", "--out", str(out)]
    assert atrous_main(argv) == 0
    assert "pixel accuracy" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    matrix = torch.tensor(report["confusion_matrix"])
    assert torch.equal(matrix, _expected_matrix(model, tmp_path / "data", (0.75, 1.0), True))
    labelled = sum(int((lab != 255).sum()) for lab in labels.values())
    assert report["pixels"] == labelled == int(matrix.sum())
    assert report["pixel_accuracy"] == pytest.approx(float(matrix.diag().sum()) / labelled)
    person = report["per_class"]["person"]["iou"]
    tp, row, col = matrix[15, 15].item(), matrix[15].sum().item(), matrix[:, 15].sum().item()
    assert person == pytest.approx(tp / (row + col - tp))
    ious = [v["iou"] for v in report["per_class"].values() if v["iou"] is not None]
    assert report["miou"] == pytest.approx(float(np.mean(ious)))
    assert report["images"] == 3 and report["scales"] == [0.75, 1.0] and report["flip"] is True
    assert (out / "confusion_matrix.png").stat().st_size > 0


def test_eval_imported_torchvision_weights(tmp_path):
    segmentation = pytest.importorskip("torchvision.models.segmentation",
                                       reason="torchvision is a test dependency: pip install torchvision")
    voc_tree(tmp_path / "data", n=2)
    torch.manual_seed(0)
    tv = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21,
                                                   aux_loss=True)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    out = tmp_path / "eval"
    argv = ["eval", "--weights", f"torchvision:deeplabv3_mobilenet_v3_large={tmp_path / 'tv.pth'}",
            "--dataset", "voc", "--data-root", str(tmp_path / "data"), "--impl", "torch", "--out", str(out)]
    assert atrous_main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["weights"]["format"] == "torchvision:deeplabv3_mobilenet_v3_large"
    assert list(report["per_class"])[15] == "person"
    # torchvision's own model gives the same confusion matrix (its forward, ImageNet normalisation).
    ds = VOCSegmentation(tmp_path / "data", "val", transform=T.eval_transform())
    tv.eval()
    expected = torch.zeros(21, 21, dtype=torch.long)
    with torch.no_grad():
        for i in range(len(ds)):
            sample = ds[i]
            pred = tv(sample["image"][None])["out"].argmax(1)
            expected += confusion_matrix(pred, sample["mask"][None], 21)
    assert torch.equal(torch.tensor(report["confusion_matrix"]), expected)


def test_eval_errors_are_one_line_and_status_2(tmp_path, capsys):
    ckpt, _ = _checkpoint(tmp_path, num_classes=4)
    voc_tree(tmp_path / "data", n=1)
    cases = [
        (["--checkpoint", str(tmp_path / "none.pt")], "no checkpoint file"),
        (["--checkpoint", str(ckpt), "--dataset", "voc", "--data-root", str(tmp_path / "data")],
         "predicts 4 classes, dataset 'voc' has 21"),
        (["--checkpoint", str(ckpt), "--dataset", "voc"], "expected --data-root"),
        (["--weights", "torchvision:deeplabv3_vgg=x.pth"], "expected one of torchvision:deeplabv3_resnet50"),
        (["--checkpoint", str(ckpt), "--scales", "0,1"], "--scales"),
    ]
    for extra, message in cases:
        assert atrous_main(["eval", *extra, "--out", str(tmp_path / "o")]) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
