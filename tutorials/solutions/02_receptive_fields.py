"""Solutions to the exercises of tutorial 2 (receptive fields); run it to check them."""

import warnings

import numpy as np
import torch

import atrous.models as M
from atrous.receptive_field import AxisRF, conv_stack, effective_receptive_field, receptive_field

# 1. Layer 1 (k 3, s 2, p 0): r = 1 + 2 * 1 = 3, j = 2, start = 0 + (1 - 0) * 1 = 1.
#    Layer 2 (k 5, s 1, p 0): r = 3 + 4 * 2 = 11, j = 2, start = 1 + (2 - 0) * 2 = 5.
#    Output 0 sees pixels 5 +- 5 = 0..10: no padding, so it starts at the first pixel.
report = receptive_field(conv_stack([(3, 2, 0, 1), (5, 1, 0, 1)]), 33)
assert report.output.rf[0] == AxisRF(size=11, jump=2, start=5.0)
assert report.output.box(0, 0) == (0, 0, 10, 10)

# 2. With weights 1/9 and no ReLU the gradient does not depend on the input: it is the number of
#    paths from each pixel, the n-fold convolution of a 3x3 box (normalised). Per axis it is the sum
#    of n independent offsets uniform on {-1, 0, 1}, each of variance 2/3: std sqrt(2n/3), which
#    grows as sqrt(n) while the RF grows as 2n + 1.
n, size = 8, 33
stack = conv_stack([(3, 1, 1, 1)] * n, channels=1, in_channels=1, relu=False)
with torch.no_grad():
    for conv in stack:
        conv.weight.fill_(1 / 9)
        conv.bias.zero_()
erf = effective_receptive_field(stack, input_size=size, samples=2)
kernel = np.ones(1)
for _ in range(n):
    kernel = np.convolve(kernel, np.ones(3))
expected = np.zeros((size, size))
c = size // 2
expected[c - n:c + n + 1, c - n:c + n + 1] = np.outer(kernel, kernel)
np.testing.assert_allclose(erf.heatmap, expected / expected.sum(), rtol=1e-6, atol=1e-12)
offsets = np.arange(-n, n + 1)
std = np.sqrt((kernel / kernel.sum() * offsets ** 2).sum())
assert abs(std - np.sqrt(2 * n / 3)) < 1e-9

# 3. The first row without a theory is the multiplication in the first squeeze-and-excitation block
#    (features.4): the feature map times a vector pooled over the whole map (a broadcast).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", M.AtrousRateWarning)
    report = receptive_field(M.MobileNetV3(output_stride=16).eval(), 65, output="out")
first = next(row for row in report.ancestors() if row.rf is None)
assert (first.op, first.name) == ("mul", "features.4.block.2")
feature_map, scale = report.branches(first)
assert feature_map.size == (9, 9) and scale.size == (1, 1)  # a 9x9 map times a 1x1 vector
assert any(r.op == "AdaptiveAvgPool2d" for r in report.ancestors(scale))  # pooled over the whole map
# 4. Design: a plain stack of five 3x3 layers has an RF of 11, so half of its gradient lies within a
#    few pixels. Dilation spreads it: rates (1, 2, 4, 8, 16) (the atrous stack) double the spacing at
#    every layer, keep the stack hole-free (HDC: M_2 = 2 <= 3, notebook 9) and put half of the
#    gradient in a square several times wider, at the same depth and weight count.
from atrous.receptive_field import atrous_stack, plain_stack  # noqa: E402
from atrous.receptive_field.arithmetic import hdc_max_distance  # noqa: E402

assert hdc_max_distance((1, 2, 4, 8, 16)) == 2

torch.manual_seed(0)
plain_erf = effective_receptive_field(plain_stack(5, channels=16), input_size=65, samples=4)
torch.manual_seed(0)
atrous_erf = effective_receptive_field(atrous_stack(channels=16), input_size=65, samples=4)
print("50% of the gradient within: plain", plain_erf.side_for_mass(0.5),
      "atrous", atrous_erf.side_for_mass(0.5))
assert atrous_erf.side_for_mass(0.5) >= 21 > plain_erf.side_for_mass(0.5)
print("all solutions check out")
