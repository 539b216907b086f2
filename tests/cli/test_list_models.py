"""`python -m atrous list-models`: the registry's names, parameter counts, default output stride, weights."""

import json

import pytest

import atrous.models as M
from atrous.__main__ import main as atrous_main

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")


def test_list_models_json_matches_the_built_models(capsys):
    assert atrous_main(["list-models", "*mobilenet*", "--json", "--num-classes", "5"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"deeplabv3_mobilenet_v3_large", "deeplabv3plus_mobilenet_v3_large"}
    for name, row in rows.items():
        built = M.get_model(name, num_classes=5)
        assert row["parameters"] == sum(p.numel() for p in built.parameters())
        assert row["output_stride"] == built.backbone.output_stride == 16
        assert row["weights"][0] == "torchvision mobilenet_v3_large ImageNet (backbone)"
    assert any("--weights torchvision:deeplabv3_mobilenet_v3_large=PATH" in w
               for w in rows["deeplabv3_mobilenet_v3_large"]["weights"])


def test_list_models_table_and_errors(capsys):
    assert atrous_main(["list-models", "deeplabv3plus_small"]) == 0
    out = capsys.readouterr().out
    params = sum(p.numel() for p in M.deeplabv3plus_small(num_classes=21).parameters())
    assert f"deeplabv3plus_small  {params / 1e6:7.2f}M  16  atrous checkpoint (backbone)" in out
    assert atrous_main(["list-models", "resnet*"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no model matches 'resnet*'" in err and "deeplabv3plus_small" in err
    with pytest.raises(SystemExit):
        atrous_main(["train", "--help"])
    assert "deeplabv3plus_xception65" in capsys.readouterr().out  # the registry in the train help
