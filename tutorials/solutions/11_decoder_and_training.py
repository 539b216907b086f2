"""Solutions to the exercises of tutorial 11 (decoder and training); run it to check them."""

import math

import numpy as np
import torch

import atrous.models as M
from atrous.data import ContextShapes
from atrous.data.synthetic import SIZE_RANGES
from atrous.metrics import ConfusionMatrix
from atrous.receptive_field import receptive_field


# 1. The dense decoder replaces each separable conv (11 a + a b + 2 b: depthwise 9 a, its BN 2 a, the
#    1x1 conv a b, its BN 2 b) by a 3x3 conv and BN: 9 a b + 2 b. Projection and classifier are the
#    same. At the paper's width it is 7.8 times larger.
def decoder_params(c_low, classes, c_aspp=256, projection=48, width=256, separable=True):
    cin = c_aspp + projection

    def conv(a, b):
        return 11 * a + a * b + 2 * b if separable else 9 * a * b + 2 * b

    return (c_low * projection + 2 * projection + conv(cin, width) + conv(width, width)
            + width * classes + classes)


def count(module):
    return sum(p.numel() for p in module.parameters())


for separable in (True, False):
    assert count(M.Decoder(256, 21, 256, separable=separable)) == decoder_params(256, 21, separable=separable)
    assert count(M.Decoder(24, 4, 64, low_level_projection=16, channels=64, separable=separable)) == \
        decoder_params(24, 4, 64, 16, 64, separable=separable)
dense, separable = decoder_params(256, 21, separable=False), decoder_params(256, 21)
assert (dense, separable) == (1_309_045, 168_325) and 7.7 < dense / separable < 7.9

# 2. All background: M[t, 0] = n_t and every other column is 0. IoU_0 = n_0 / (n_0 + (n - n_0)) = p, since
#    every pixel is predicted 0 (the union is the image). A class c > 0 that appears has TP = 0, so IoU 0.
#    With all K classes present, mIoU = p / K. A class that neither appears nor is predicted has no IoU
#    and is left out: with only the background and one object class, mIoU = p / 2.
masks = torch.stack([ContextShapes(20, image_size=96, seed=0)[i]["mask"] for i in range(20)])  # (20, H, W)
p = (masks == 0).double().mean().item()
assert set(masks.unique().tolist()) == {0, 1, 2, 3}
miou = ConfusionMatrix(4).update(torch.zeros_like(masks), masks).scores().miou
assert abs(miou - p / 4) < 1e-12
one_object = torch.zeros(32, 32, dtype=torch.long)
one_object[8:20, 8:20] = 2  # a 12x12 object of class 2
scores = ConfusionMatrix(4).update(torch.zeros_like(one_object), one_object).scores()
assert math.isnan(scores.iou[1]) and math.isnan(scores.iou[3])
assert abs(scores.miou - (1 - 144 / 1024) / 2) < 1e-12

# 3. At output stride 16 only the last stage drops its stride. By the exact a trous rule its first
#    block, the one that loses the stride, keeps rate 1; the second block's 2 depthwise 3x3 convs get
#    rate 2, at jump 16. Each adds 2 (d - 1) j = 32 pixels, so undilating removes 64.
net = M.deeplabv3plus_small(num_classes=4, output_stride=16)
rates = [m.dilation[0] for m in net.backbone.modules()
         if isinstance(m, torch.nn.Conv2d) and m.dilation[0] > 1]
assert rates == [2] * 2
rf = receptive_field(net.backbone, 128, output="out").output.rf[0]
rf_plain = receptive_field(M.undilate(net).backbone, 128, output="out").output.rf[0]
assert rf.jump == rf_plain.jump == 16
assert rf.size - rf_plain.size == 2 * 2 * (2 - 1) * 16 == 64

# 4. A pixel's depth is at most its object's inradius, at most the radius r (a circle; 0.89 r for a
#    square, 0.78 r for a triangle). At S = 112: small objects have r < 0.08 S = 9.0 px, so none of their
#    pixels reaches depth 12; medium (r < 16.8) and large (r < 28) objects do. The "far inside" column
#    scores medium and large objects only.
S = 112
assert SIZE_RANGES[0][1] * S < 12 < SIZE_RANGES[1][1] * S
data = ContextShapes(100, image_size=S, seed=0)
deep = {g: 0 for g in range(3)}
for i in range(len(data)):
    s = data.raw(i)
    far = s["depth"].astype(np.float32) >= 12
    for g in range(3):
        deep[g] += int((far & (s["size"] == g)).sum())
print("pixels at depth >= 12 by size class:", deep)
assert deep[0] == 0 and deep[1] > 0 and deep[2] > deep[1]
# 5. Design: a pixel at depth d needs a centred RF of 2d + 1 to see the rim, and the deepest pixels of
#    ContextShapes are about S / 4 deep (radius < 0.25 S), so they need about S / 2 + 1. The undilated
#    backbone's RF at OS 8 is 187 px (347 with dilation). Keep the objects' relative size and grow the
#    images: from S = 374 the deepest pixels need more than 187 px, and only the dilated network can
#    see their rim. (Or keep S and let objects grow to r < 0.45 S, a need of 0.9 S + 1: from S = 207.)
plain_rf = receptive_field(M.undilate(M.deeplabv3plus_small(num_classes=4, output_stride=8)).backbone,
                           112, output="out").output.rf[0].size
atrous_rf = receptive_field(M.deeplabv3plus_small(num_classes=4, output_stride=8).backbone,
                            112, output="out").output.rf[0].size
assert (plain_rf, atrous_rf) == (187, 347)
assert min(s for s in range(64, 1024) if s // 2 + 1 > plain_rf) == 374
assert min(s for s in range(64, 1024) if 0.9 * s + 1 > plain_rf) == 207
print("all solutions check out")
