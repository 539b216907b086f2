"""Receptive fields of our DeepLab models: the analysis equals the gradient measurement."""

import pytest
import torch

import atrous.models as M
from atrous.receptive_field import measure_receptive_fields, receptive_field


@pytest.mark.parametrize("name,size", [
    ("deeplabv3plus_xception65", (65, 65)),     # the paper model: separable convs, ASPP, decoder
    ("deeplabv3_resnet50", (49, 57)),           # dense atrous convs, multi-grid-free torchvision rates
    ("deeplabv3plus_mobilenet_v3_large", (45, 45)),
])
def test_analysis_matches_measurement_on_our_models(name, size):
    torch.manual_seed(0)
    model = M.MODELS[name](num_classes=3, output_stride=16).eval()
    report = receptive_field(model, size)
    assert report.supported, report.problems
    h, w = report.output.size
    positions = [(0, 0), ((h - 1) // 2, (w - 1) // 2), (h - 1, w - 1)]
    for measured in measure_receptive_fields(model, size, positions):
        assert measured.box == report.output.box_clipped(*measured.position), (name, measured.position)


def test_strides_become_dilation_without_losing_receptive_field():
    # Output stride 8 replaces the last stage's stride by dilation 2: the feature map is twice as
    # dense (jump 8 instead of 16) and the receptive field is unchanged, ResNet-50's well-known
    # 427 pixels, because every tap after the removed stride is spread twice as far.
    rf = {}
    for os_ in (8, 16):
        backbone = M.build_backbone("resnet50", output_stride=os_).eval()
        report = receptive_field(backbone, (129, 129), output="out")
        rf[os_] = report.output.rf[0]  # AxisRF(size, jump, start) along the height
    assert rf[8].jump == 8 and rf[16].jump == 16
    assert rf[8].size == rf[16].size == 427
