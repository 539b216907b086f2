"""The small DeepLabV3+ (atrous.models.small): shapes, rates, and undilate as the no-atrous control."""

import torch


def test_small_model_and_undilate():
    import atrous.models as M
    from atrous.receptive_field import receptive_field

    torch.manual_seed(0)
    model = M.deeplabv3plus_small(num_classes=4, output_stride=8).eval()
    rates = sorted({m.dilation[0] for m in model.modules() if isinstance(m, torch.nn.Conv2d)})
    assert rates == [1, 2, 4, 8, 12] and model.aspp.rates == (4, 8, 12)  # stages dilated 2 and 4; ASPP
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.backbone(x)
        y = model(x)
    assert features["low"].shape == (2, 24, 16, 16) and features["out"].shape == (2, 128, 8, 8)
    assert y.shape == (2, 4, 64, 64)
    before = receptive_field(model.backbone, (64, 64), output="out").output.rf[0]
    params = {k: v.clone() for k, v in model.state_dict().items()}
    M.undilate(model)
    assert all(m.dilation == (1, 1) and m.padding == ((m.kernel_size[0] - 1) // 2,) * 2
               for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert model.aspp.rates == (1, 1, 1)
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())  # same weights
    with torch.no_grad():
        assert model(x).shape == y.shape and model.backbone(x)["out"].shape == (2, 128, 8, 8)
    after = receptive_field(model.backbone, (64, 64), output="out").output.rf[0]
    # The exact à trous rule keeps the OS-32 network's RF (347 px); undilated, it shrinks.
    assert (before.size, before.jump) == (347, 8) and (after.size, after.jump) == (187, 8)
    os32 = receptive_field(M.SlimXception(32), (64, 64), output="out").output.rf[0]
    assert (os32.size, os32.jump) == (347, 32)
