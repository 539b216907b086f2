"""The legacy design of the experiment: by-size scores checked by hand, the table, the command end to end."""

import argparse
import json

import numpy as np
import pytest
import torch

from atrous.cli import experiment as experiment_cli
from atrous.data import ContextShapes
from atrous.experiment import VARIANTS, ExperimentRow, Variant, evaluate_by_size, format_table

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")


class Constant(torch.nn.Module):
    """Predicts class ``c`` everywhere."""

    def __init__(self, c: int, num_classes: int = 4):
        super().__init__()
        self.c, self.k = c, num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.k, *x.shape[-2:])
        out[:, self.c] = 1
        return out + self.dummy


def test_by_size_scores_of_a_constant_prediction_by_hand():
    """Predicting "red" (1) everywhere: on the pixels of objects of size s, red's IoU is the share of
    red among them, the other object classes score 0, so the object mIoU is that share / 3."""
    ds = ContextShapes(12, 64, seed=8)
    overall, by_size, deep_acc = evaluate_by_size(Constant(1), ds, deep=6.0, batch_size=5)
    masks = np.stack([ds.raw(i)["mask"] for i in range(12)])
    sizes = np.stack([ds.raw(i)["size"] for i in range(12)])
    depth = np.stack([ds.raw(i)["depth"] for i in range(12)]).astype(np.float32)
    for s in range(3):
        here = sizes == s
        assert here.any()
        assert by_size[s].miou == pytest.approx((masks[here] == 1).mean() / 3)
    assert overall.miou == pytest.approx((masks == 1).mean() / 4)  # the other three classes: IoU 0
    assert deep_acc == pytest.approx((masks[depth >= 6.0] == 1).mean())


def test_table_format():
    row = ExperimentRow(Variant("atrous", 8, True), 0.75, 0.96, [0.8, 0.7, 0.6], 0.5, 443, 61, 10.0)
    table = format_table([row], deep=12)
    lines = table.splitlines()
    assert lines[0].startswith("| variant | output stride | backbone RF (px) | ERF 50% (px) | mIoU | small |")
    assert lines[2] == "| atrous | 8 | 443 | 61 | 75.0 | 80.0 | 70.0 | 60.0 | 50.0 |"


def test_experiment_command_end_to_end(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    experiment_cli.add_arguments(parser)
    argv = ["--design", "legacy", "--image-size", "64", "--train-size", "8", "--val-size", "4",
            "--batch-size", "4",
            "--epochs", "1", "--no-progress", "--out", str(tmp_path)]
    assert experiment_cli.main(parser.parse_args(argv)) == 0
    out = capsys.readouterr().out
    table = (tmp_path / "experiment.md").read_text()
    assert table.strip() in out
    rows = table.strip().splitlines()[2:]
    assert [r.split("|")[1].strip() for r in rows] == [v.name for v in VARIANTS]
    assert [int(r.split("|")[2]) for r in rows] == [8, 8, 32]
    rf = {v.name: int(r.split("|")[3]) for v, r in zip(VARIANTS, rows)}
    assert rf["no dilation"] < rf["atrous"]  # the same strides, no rates: a smaller receptive field
    for name in ("experiment.json", "experiment.png", "atrous/last.pt", "no_dilation/last.pt"):
        assert (tmp_path / name).stat().st_size > 0
    assert experiment_cli.main(parser.parse_args(["--design", "legacy", "--variants", "atrous,nope"])) == 2
    assert "unknown ['nope']" in capsys.readouterr().err


def test_experiment_writes_the_readme_table(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    experiment_cli.add_arguments(parser)
    readme = tmp_path / "README.md"
    readme.write_text("# title\n<!-- experiment:start -->\nold\n<!-- experiment:end -->\ntail\n")
    argv = ["--design", "legacy", "--variants", "atrous", "--image-size", "48", "--train-size", "4",
            "--val-size", "2",
            "--batch-size", "2", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "out"),
            "--update-readme", str(readme)]
    assert experiment_cli.main(parser.parse_args(argv)) == 0
    text = readme.read_text()
    assert text.startswith("# title\n<!-- experiment:start -->\nMeasured with `python -m atrous experiment "
                           "--design legacy --variants 'atrous' --epochs 1 --train-size 4 --val-size 2 "
                           "--image-size 48 "
                           "--batch-size 2` (1 trainings")
    assert "old" not in text and text.endswith("<!-- experiment:end -->\ntail\n")
    assert (tmp_path / "out" / "experiment.md").read_text().strip() in text
    # A missing README is refused before any training.
    argv[-1] = str(tmp_path / "nope.md")
    assert experiment_cli.main(parser.parse_args(argv)) == 2
    assert "no file" in capsys.readouterr().err


def test_experiment_over_seeds_reports_mean_and_range(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    experiment_cli.add_arguments(parser)
    argv = ["--design", "legacy", "--variants", "atrous,no dilation", "--seeds", "0,3", "--image-size", "48",
            "--train-size", "4",
            "--val-size", "2", "--batch-size", "2", "--epochs", "1", "--no-progress", "--out", str(tmp_path)]
    assert experiment_cli.main(parser.parse_args(argv)) == 0
    runs = [json.loads((tmp_path / f"seed-{s}" / "experiment.json").read_text()) for s in (0, 3)]
    assert [r["config"]["seed"] for r in runs] == [0, 3]
    lines = (tmp_path / "experiment.md").read_text().strip().splitlines()
    assert lines[0].startswith("| variant | output stride |")
    assert lines[5] == "| seed | atrous | no dilation |"
    for i, name in enumerate(("atrous", "no dilation")):
        cells = [c.strip() for c in lines[2 + i].split("|")[1:-1]]
        mious = [100 * r["rows"][i]["miou"] for r in runs]
        assert cells[0] == name
        assert cells[4] == f"{sum(mious) / 2:.1f} ({min(mious):.1f}-{max(mious):.1f})"
        assert cells[3] == "/".join(str(r["rows"][i]["erf50"]) for r in runs)
    assert lines[7] == "| 0 | " + " | ".join(f"{100 * r['miou']:.1f}" for r in runs[0]["rows"]) + " |"
    bad = ["--design", "legacy", "--seeds", "0,x", "--out", str(tmp_path)]
    assert experiment_cli.main(parser.parse_args(bad)) == 2
    assert experiment_cli.main(parser.parse_args(["--design", "legacy", "--seeds", "1", "--seed", "2"])) == 2
    assert "--seeds: expected comma-separated integers" in capsys.readouterr().err


def _parser():
    parser = argparse.ArgumentParser()
    experiment_cli.add_arguments(parser)
    return parser


def test_reach_design_quick_end_to_end(tmp_path, capsys):
    """--quick: tiny trainings, so only the plumbing is checked: files, table, statistics from the JSON."""
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- reach:start -->\nold\n<!-- reach:end -->\nb\n")
    argv = ["--quick", "--no-progress", "--out", str(tmp_path), "--update-readme", str(readme)]
    assert experiment_cli.main(_parser().parse_args(argv)) == 0  # --design reach is the default
    results = json.loads((tmp_path / "reach" / "reach.json").read_text())
    for name in ("reach.md", "reach_depth.png", "reach_errors.png"):
        assert (tmp_path / "reach" / name).stat().st_size > 0
    assert [v["key"] for v in results["variants"]] == ["A", "B", "C", "D"]
    assert len({v["params"] for v in results["variants"]}) == 1
    first = results["predictions"][1]  # P2: B - A on acc_far, recomputed from the per-seed runs
    diffs = [100 * (b["acc_far"] - a["acc_far"]) for a, b in zip(results["runs"]["A"], results["runs"]["B"])]
    assert first["differences"] == pytest.approx(diffs)
    assert all(p["verdict"] in ("held", "failed") for p in results["predictions"])
    text = readme.read_text()
    assert text.startswith("a\n<!-- reach:start -->\nMeasured with `python -m atrous experiment "
                           "--design reach --quick`:\n\nPredictions, written before the runs:")
    assert text.index("**P1**") < text.index("| variant |") and "\nold\n" not in text
    # Bad input: one line, status 2, before any training.
    for bad, message in ((["--seeds", "1"], "at least 2 seeds"),
                         (["--epochs", "2"], "not used by --design reach"),
                         (["--variants", "atrous"], "only for --design legacy"),
                         (["--steps", "0"], "expected a positive number"),
                         (["--update-readme", str(tmp_path / "nope.md")], "no file")):
        capsys.readouterr()
        assert experiment_cli.main(_parser().parse_args(["--quick", *bad])) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_transfer_design_quick_end_to_end(tmp_path):
    argv = ["--design", "transfer", "--quick", "--no-progress", "--out", str(tmp_path)]
    assert experiment_cli.main(_parser().parse_args(argv)) == 0
    results = json.loads((tmp_path / "transfer" / "transfer.json").read_text())
    assert list(results["runs"])[:3] == ["OS 32 (as trained)", "OS 8 dilated", "OS 8 undilated"]
    assert len(results["runs"]) == 5  # and the two fine-tuned OS-8 models
    assert [p["key"] for p in results["predictions"]] == ["T1", "T2", "T3"]
    assert (tmp_path / "transfer" / "transfer.png").stat().st_size > 0
    assert "| OS 8 dilated |" in (tmp_path / "transfer" / "transfer.md").read_text()
