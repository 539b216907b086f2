"""Pretrained backbones: torchvision, timm and atrous state dicts on disk, file:// downloads, provenance."""

import argparse
import hashlib

import pytest
import torch

import atrous.models as M
from atrous.cli import train as train_cli
from atrous.models import WeightImportError, download_weights, load_backbone_weights
from atrous.training import ModelSpec, build_model, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")

torchvision = pytest.importorskip("torchvision",
                                  reason="torchvision is a test dependency: pip install torchvision")


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_backbone_equals(model, state, prefix=""):
    ours = model.backbone.state_dict()
    for key, value in state.items():
        if key.startswith(prefix) and key[len(prefix):] in ours:
            assert torch.equal(ours[key[len(prefix):]], value), key


def test_torchvision_mobilenet_state_dict_from_disk(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.mobilenet_v3_large(weights=None).state_dict()
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(source, path)
    model = M.deeplabv3_mobilenet_v3_large(num_classes=3, weights_backbone=str(path))
    loaded = {k: v for k, v in source.items() if not k.startswith("classifier.")}
    assert len(loaded) == len(model.backbone.state_dict())
    _assert_backbone_equals(model, loaded)
    assert model.backbone_provenance == {"source": str(path), "sha256": _sha(path),
                                         "format": "torchvision_mobilenet_v3_large", "tensors": len(loaded)}
    assert M.deeplabv3_mobilenet_v3_large(num_classes=3).backbone_provenance is None


def test_torchvision_resnet50_and_timm_xception65_state_dicts(tmp_path):
    timm = pytest.importorskip("timm", reason="timm is a test dependency: pip install timm")
    torch.manual_seed(1)
    resnet = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(resnet, tmp_path / "resnet50.pth")
    model = M.deeplabv3plus_resnet50(num_classes=3, weights_backbone=tmp_path / "resnet50.pth")
    _assert_backbone_equals(model, resnet)
    assert model.backbone_provenance["format"] == "torchvision_resnet"
    xception = timm.create_model("xception65", pretrained=False).state_dict()
    torch.save(xception, tmp_path / "xception65.pth")
    model = M.deeplabv3plus_xception65(num_classes=3, weights_backbone=str(tmp_path / "xception65.pth"))
    assert model.backbone_provenance["format"] == "timm_xception"
    converted = M.convert_timm_xception(xception)
    _assert_backbone_equals(model, converted)
    # The wrong file: a ResNet state dict for the Xception backbone names what differs, loads nothing.
    with pytest.raises(WeightImportError, match=r"missing from the checkpoint.*\n(.|\n)*unexpected"):
        M.deeplabv3plus_xception65(num_classes=3, weights_backbone=tmp_path / "resnet50.pth")


def test_wrong_files_raise_the_importers_errors(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.mobilenet_v3_large(weights=None).state_dict()
    source["features.0.0.weight"] = torch.zeros(16, 3, 5, 5)  # a shape that differs
    torch.save(source, tmp_path / "bad.pth")
    model = M.deeplabv3_mobilenet_v3_large(num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightImportError, match=r"shape mismatches \(1\):\n    features.0.0.weight"):
        load_backbone_weights(model, tmp_path / "bad.pth")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing was loaded
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(WeightImportError, match="junk.pth.*is not a readable torch state dict"):
        load_backbone_weights(model, tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_backbone_weights(model, tmp_path / "none.pth")


def test_file_url_downloads_once_checks_sha256_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("ATROUS_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = M.deeplabv3plus_small(num_classes=4)
    source = tmp_path / "served" / "small.pth"
    source.parent.mkdir()
    torch.save(model.backbone.state_dict(), source)
    digest = _sha(source)
    url = source.as_uri()
    with pytest.raises(ValueError, match="expected a sha256"):
        download_weights(url)
    with pytest.raises(ValueError, match=f"has sha256 {digest}, expected 00000000; the file was deleted"):
        download_weights(url, "00000000")
    assert not any((tmp_path / "cache" / "weights").iterdir())
    local = download_weights(url, digest)
    assert local == tmp_path / "cache" / "weights" / "small.pth" and _sha(local) == digest
    source.unlink()  # the second call reads the cache
    fresh = M.deeplabv3plus_small(num_classes=4, weights_backbone=url, weights_backbone_sha256=digest[:16])
    _assert_backbone_equals(fresh, model.backbone.state_dict())
    assert fresh.backbone_provenance["source"] == url and fresh.backbone_provenance["sha256"] == digest
    # torch.hub-style names carry the hash prefix: no sha256 argument needed.
    hub = tmp_path / "served" / f"small-{digest[:8]}.pth"
    hub.write_bytes(local.read_bytes())  # the same bytes (torch.save records the file's name)
    assert _sha(download_weights(hub.as_uri())) == digest


def test_train_from_an_atrous_checkpoint_records_provenance(tmp_path, capsys):
    torch.manual_seed(5)
    spec = ModelSpec("deeplabv3plus_small", 4, 8)
    donor = build_model(spec)
    ckpt = save_checkpoint(tmp_path / "donor.pt", model=donor, spec=spec)
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    argv = ["--backbone-weights", str(ckpt), "--image-size", "48", "--train-size", "4", "--val-size", "4",
            "--batch-size", "4", "--epochs", "1", "--stop-after", "1", "--no-progress", "--lr", "1e-9",
            "--out", str(tmp_path / "run")]
    assert train_cli.main(parser.parse_args(argv)) == 0
    assert "backbone weights from" in capsys.readouterr().out
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["backbone_weights"] == {"source": str(ckpt), "sha256": _sha(ckpt), "format": "atrous",
                                         "tensors": len(donor.backbone.state_dict())}
    # One step at lr 1e-9: the backbone is the donor's (BN running stats moved; compare the convs).
    for key, value in donor.state_dict().items():
        if key.startswith("backbone.") and key.endswith("weight") and value.dim() == 4:
            torch.testing.assert_close(state["model"][key], value, atol=1e-6, rtol=0)
    # A missing file: one line on stderr, exit status 2.
    argv[1] = str(tmp_path / "missing.pt")
    assert train_cli.main(parser.parse_args(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no weights file" in err
