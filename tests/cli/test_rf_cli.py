"""Tests for the `rf` command (atrous.cli.rf) on small models."""

import argparse
import re

import matplotlib
import pytest
from torch import nn

from atrous import __main__ as atrous_main
from atrous import receptive_field as rfm
from atrous.cli import rf as rf_cli
from atrous.models import list_models
from atrous.receptive_field import measurement

matplotlib.use("Agg")  # headless; viz draws on Figure objects, never through pyplot


def run(*argv):
    parser = argparse.ArgumentParser()
    rf_cli.add_arguments(parser)
    return rf_cli.main(parser.parse_args([str(a) for a in argv]))


def test_named_stack_prints_table_measures_and_draws(tmp_path, capsys):
    assert run("hybrid", "--input-size", 41, 41, "--out", tmp_path) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["#", "layer", "op", "params"]
    assert out.count("Conv2d") == 6
    # hybrid (1, 2, 3) x 2: RF 1 + 2 (1 + 2 + 3) 2 = 25, centred on pixel 20 of 41
    assert "box (8, 8, 32, 32), 25x25 pixels" in out
    assert "-> agrees" in out and "inside the image" in out
    for name in ("hybrid_growth.png", "hybrid_measured.png", "hybrid_erf.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_import_path_model_without_pictures(tmp_path, capsys):
    spec = "atrous.receptive_field:strided_stack"
    assert run(spec, "--input-size", 21, 25, "--no-pictures", "--out", tmp_path) == 0
    out = capsys.readouterr().out
    assert "extends past the image" in out  # RF 43 > 21
    assert "-> agrees" in out
    assert not any(tmp_path.iterdir())


def test_registry_is_extensible_and_unanalysable_models_exit_2(monkeypatch, capsys):
    def factory():
        return nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten())

    monkeypatch.setitem(rfm.TEACHING_STACKS, "flat", (factory, "a classifier"))
    assert run("flat", "--input-size", 9, 9, "--no-pictures") == 2
    captured = capsys.readouterr()
    assert "problem: " in captured.out and "flatten" in captured.out
    assert "cannot be fully analysed" in captured.err


def test_lists_the_teaching_stacks_and_every_registered_model():
    parser = argparse.ArgumentParser()
    rf_cli.add_arguments(parser)
    listed = [line.split()[0] for line in parser.epilog.split("\n\n")[0].splitlines()[1:]]
    assert listed == [*rfm.TEACHING_STACKS, *list_models()]


@pytest.mark.filterwarnings("ignore:ASPP:UserWarning")  # rates larger than the tiny feature map
def test_registered_model_by_name(capsys):
    # a registry name builds that model with 21 classes: the output row has 21 channels
    assert run("deeplabv3plus_small", "--input-size", 33, 33, "--no-pictures", "--no-measure") == 0
    lines = capsys.readouterr().out.splitlines()
    index = next(line for line in lines if line.startswith("output #")).split()[1].lstrip("#")
    column = re.search(r"\bC\b", lines[0]).start()
    row = next(line for line in lines[2:] if line.split()[:1] == [index])
    assert row[column:].split()[0] == "21"


def test_bad_model_and_arguments_exit_2(capsys):
    assert run("nope") == 2
    assert "MODEL 'nope'" in capsys.readouterr().err
    assert run("atrous.receptive_field:nothing_here") == 2
    assert "cannot import" in capsys.readouterr().err
    assert run("plain", "--input-size", 0, 5) == 2
    assert "--input-size" in capsys.readouterr().err


def test_photo_erf_needs_three_channels(monkeypatch, capsys):
    monkeypatch.setitem(rfm.TEACHING_STACKS, "gray", (lambda: nn.Conv2d(1, 1, 3), "one input channel"))
    assert run("gray", "--input-size", 9, 9, "--erf-input", "photo") == 2
    assert "3-channel" in capsys.readouterr().err


def test_disagreement_exits_1(monkeypatch, capsys):
    real = measurement.measure_receptive_field

    def shifted(*args, **kwargs):
        m = real(*args, **kwargs)
        m.box = (m.box[0] + 1, *m.box[1:])
        return m

    monkeypatch.setattr(measurement, "measure_receptive_field", shifted)
    assert run("plain", "--input-size", 17, 17, "--no-pictures") == 1
    assert "DISAGREES" in capsys.readouterr().out


def test_random_erf_and_no_measure(tmp_path, capsys):
    assert run("gridding", "--input-size", 19, 19, "--out", tmp_path, "--no-measure",
               "--erf-input", "random", "--erf-samples", 2) == 0
    out = capsys.readouterr().out
    assert "measured" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gridding_erf.png", "gridding_growth.png"]


def test_teaching_pictures(tmp_path):
    assert run("plain", "--input-size", 17, 17, "--out", tmp_path, "--no-measure", "--teaching") == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"dilated_kernel.png", "dilated_conv.gif", "rf_growth.png", "gridding.png", "aspp_coverage.png",
            "erf_stacks.png"} <= names


@pytest.mark.skipif("rf" not in atrous_main.COMMANDS, reason="`rf` is not registered in atrous.__main__ yet")
def test_python_m_atrous_rf(capsys):
    assert atrous_main.main(["rf", "plain", "--input-size", "17", "17", "--no-pictures"]) == 0
    assert "-> agrees" in capsys.readouterr().out
