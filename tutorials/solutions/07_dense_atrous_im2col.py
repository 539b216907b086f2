"""Solutions to the exercises of tutorial 7 (dense atrous convolution by im2col); run it to check them."""

import torch
import torch.nn.functional as F

# 1. At stride 2 each output moves the window by 2 in both directions: (64 + 2d - (2d + 1)) // 2 + 1 = 32
#    outputs per axis, 32 * 32 columns of 9 C rows: 9 * 1024 / 4096 = 2.25 times the input (9 / s^2).
x = torch.randn(1, 4, 64, 64)
for d in (1, 6, 12):
    cols = F.unfold(x, 3, dilation=d, padding=d, stride=2)
    assert cols.shape == (1, 4 * 9, 32 * 32)
    assert cols.numel() / x.numel() == 9 / 2**2 == 2.25

# 2. Tap (i, j) of output (oh, ow) reads row oh - d + i d: for rate 18 on 33x33 the top taps (i = 0)
#    read inside the image only for oh >= 18, the bottom taps (i = 2) only for oh <= 14. An im2col that
#    drops, for each output, the taps that read padding gives columns of different lengths: the
#    outputs split into 9 regions (inside / outside per axis and side), and each region is its own
#    GEMM with only its valid taps (the centre region uses the centre tap alone: a 1x1 conv). Here the
#    regions for one axis, checked against the padded matrix:
d, size = 18, 33
valid_top = [oh for oh in range(size) if 0 <= oh - d < size]
valid_bottom = [oh for oh in range(size) if 0 <= oh + d < size]
assert valid_top == list(range(18, 33)) and valid_bottom == list(range(0, 15))
ones = F.unfold(torch.ones(1, 1, size, size), 3, dilation=d, padding=d)  # (1, 9, 33 * 33)
top_tap_rows = ones[0, 1].view(size, size).amax(dim=1)  # tap (0, 1): does row oh read the image?
assert torch.nonzero(top_tap_rows).flatten().tolist() == valid_top
#    Outputs 15..17 of each axis read only their centre tap along that axis: a 1x1 conv there.
assert set(range(size)) - set(valid_top) - set(valid_bottom) == {15, 16, 17}
print("all solutions check out")
