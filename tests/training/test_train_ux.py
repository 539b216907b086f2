"""Training UX: --eval-only, images/s and ETA in the progress bar, metrics CSV/JSON, curves, resume checks."""

import argparse
import csv
import json

import pytest

from atrous.cli import train as train_cli
from atrous.training import TrainConfig, train
from atrous.training.records import format_eta, spec_difference

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")

TINY = dict(image_size=48, train_size=8, val_size=4, batch_size=4, epochs=2, progress=False)


def _cli(argv):
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    return train_cli.main(parser.parse_args([str(a) for a in argv]))


def test_metrics_files_curves_and_eval_only(tmp_path, capsys):
    result = train(TrainConfig(**TINY, out=str(tmp_path)))
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["miou"]) == pytest.approx(result.history[-1]["miou"])
    assert float(rows[0]["images_per_second"]) > 0
    records = json.loads((tmp_path / "metrics.json").read_text())
    assert list(records[-1]["iou"]) == ["background", "red", "green", "blue"]
    assert records[-1]["train_loss"] == pytest.approx(result.history[-1]["train_loss"])
    assert (tmp_path / "curves.png").stat().st_size > 0
    # --eval-only on the last checkpoint: the same model, the same validation set, the same mIoU.
    capsys.readouterr()
    argv = ["--image-size", 48, "--train-size", 8, "--val-size", 4, "--batch-size", 2, "--no-progress",
            "--eval-only", "--resume", tmp_path / "last.pt", "--out", tmp_path / "eval"]
    assert _cli(argv) == 0
    assert "validation of" in capsys.readouterr().out
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["step"] == result.step == 4
    assert report["miou"] == pytest.approx(result.history[-1]["miou"], abs=1e-9)
    assert not (tmp_path / "eval" / "last.pt").exists()  # nothing trained, nothing saved


def test_progress_bar_has_images_per_second_and_eta(tmp_path, monkeypatch):
    import tqdm.auto

    postfixes = []

    class Recorder:
        def __init__(self, **kw):
            pass

        def set_postfix(self, **kw):
            postfixes.append(kw)

        def update(self, n=1):
            pass

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    train(TrainConfig(**{**TINY, "progress": True, "out": str(tmp_path)}))
    assert len(postfixes) == 4 and all(float(p["img_s"]) > 0 for p in postfixes)
    assert postfixes[-1]["eta"] == "0:00:00"  # nothing left after the last step
    assert all(p["eta"].count(":") == 2 for p in postfixes)


def test_resume_refuses_another_model_naming_the_difference(tmp_path, capsys):
    train(TrainConfig(**{**TINY, "epochs": 1}, out=str(tmp_path)))
    argv = ["--image-size", 48, "--train-size", 8, "--val-size", 4, "--batch-size", 4, "--no-progress",
            "--output-stride", 16, "--resume", tmp_path / "last.pt", "--out", tmp_path / "again"]
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "holds another model" in err and "output_stride: 8 in the checkpoint, 16 asked for" in err


def test_spec_difference_and_eta_format():
    assert spec_difference({"name": "a", "num_classes": 4}, {"name": "b", "num_classes": 4}) == \
        "name: 'a' in the checkpoint, 'b' asked for"
    assert format_eta(3725.4) == "1:02:05" and format_eta(float("nan")) == "?"
