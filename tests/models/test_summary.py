"""atrous.models.summary: per-layer output shapes, parameters, analytic MACs, dilation and receptive field."""

import io

import pytest
from torch import nn

import atrous.models as M
from atrous.nn import AtrousConv2d, AtrousSeparableConv2d

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")


def _toy() -> nn.Sequential:
    return nn.Sequential(
        AtrousConv2d(3, 8, 3, stride=2, padding=1, bias=False),  # 8 * 3 * 9 MACs per output pixel
        nn.BatchNorm2d(8),
        nn.ReLU(),
        AtrousSeparableConv2d(8, 16, 3, dilation=2),
        AtrousConv2d(16, 4, 1),
    )


def test_rows_shapes_params_macs_and_dilation():
    report = M.summary(_toy(), (3, 17, 21), show=False)
    rows = {r.name: r for r in report.rows}
    assert list(rows)[:4] == ["0", "1", "2", "3.conv_dw"]
    assert rows["0"].output_shape == (1, 8, 9, 11)
    assert rows["0"].params == 8 * 3 * 9
    assert rows["0"].macs == 8 * 3 * 9 * 9 * 11
    assert rows["3.conv_dw"].macs == 8 * 9 * 9 * 11 and rows["3.conv_dw"].dilation == "2"
    assert rows["3.conv_pw"].macs == 16 * 8 * 9 * 11 and rows["3.conv_pw"].dilation == ""
    assert rows["4"].params == 16 * 4 + 4 and rows["4"].output_shape == (1, 4, 9, 11)
    assert rows["1"].macs == 0 and "3.act_dw" in rows  # BN and activations count no MACs
    assert report.total_params == sum(p.numel() for p in _toy().parameters())
    assert report.total_macs == sum(r.macs for r in report.rows)


def test_depth_aggregates_the_leaves():
    model = M.deeplabv3plus_mobilenet_v3_large(num_classes=3)
    leaves = M.summary(model, 65, show=False)
    grouped = M.summary(model, 65, depth=2, show=False)
    names = [r.name for r in grouped.rows]
    assert names == ["backbone.features", "aspp.convs", "aspp.project", "decoder.project", "decoder.convs",
                     "decoder.classifier"]
    assert grouped.total_macs == leaves.total_macs
    assert sum(r.params for r in grouped.rows) == grouped.total_params
    rows = {r.name: r for r in grouped.rows}
    assert rows["backbone.features"].output_shape == (1, 960, 5, 5)
    assert rows["aspp.convs"].dilation == "6,12,18" and rows["aspp.convs"].output_shape is None


def test_resnet50_macs_match_the_published_count():
    """ResNet-50 at 224x224 is 4.09 GMACs (torchvision's "4.09 GFLOPS" are multiply-accumulates),
    2 M of them in the classifier, which our backbone has not."""
    report = M.summary(M.resnet50(output_stride=32, multi_grid=None), 224, show=False, receptive_field=False)
    assert report.total_macs == pytest.approx(4.089e9 - 2.048e6, rel=2e-3)
    # atrous convolution keeps the parameters and raises the cost: output stride 8 is ~4x in layers 3-4
    dense = M.summary(M.resnet50(output_stride=8, multi_grid=None), 224, show=False, receptive_field=False)
    assert dense.total_params == report.total_params and dense.total_macs > 3 * report.total_macs


def test_printed_table(capsys):
    M.summary(_toy(), 17)
    out = capsys.readouterr().out
    assert "input 1x3x17x17" in out and "output shape" in out and "MACs" in out
    assert "AtrousConv2d [3x3 /2]" in out and "AtrousConv2d [3x3 dw]" in out
    assert "parameters:" in out
    buffer = io.StringIO()
    M.summary(_toy(), 17, file=buffer)
    assert buffer.getvalue() == out


def test_receptive_field_column():
    report = M.summary(_toy(), 33, show=False)
    rf = {r.name: r.receptive_field for r in report.rows}
    assert report.has_receptive_field
    assert rf["0"] == "3"  # 3x3 conv
    assert rf["1"] == rf["2"] == "3"  # BN and ReLU keep their input's RF
    assert rf["3.conv_dw"] == "11"  # 3 + (5 - 1) * 2: a rate-2 3x3 after stride 2
    assert rf["4"] == "11"
    assert "RF" in report.table()
    off = M.summary(_toy(), 33, show=False, receptive_field=False)
    assert not off.has_receptive_field and all(r.receptive_field == "" for r in off.rows)


def test_summary_restores_training_mode_and_checks_input_size():
    model = _toy().train()
    M.summary(model, 9, show=False)
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="input_size"):
        M.summary(model, (1, 2, 3, 4, 5), show=False)


def test_summary_of_a_model_on_the_torch_impl():
    model = M.deeplabv3_xception41(num_classes=2, impl="torch")
    report = M.summary(model, (2, 3, 33, 33), show=False, receptive_field=False)
    assert report.rows[-1].name == "classifier"
    assert report.rows[-1].output_shape == (2, 2, 3, 3)  # before upsampling: ceil(33 / 16)
    # the implementation changes how, not what, is computed
    same = M.summary(M.deeplabv3_xception41(num_classes=2), (2, 3, 33, 33), show=False, receptive_field=False)
    assert report.total_macs == same.total_macs and report.total_params == same.total_params
