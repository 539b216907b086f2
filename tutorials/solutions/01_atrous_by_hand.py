"""Solutions to the exercises of tutorial 1 (atrous convolution by hand); run it to check them."""

import torch
import torch.nn.functional as F


def k_eff(k: int, d: int) -> int:
    return k + (k - 1) * (d - 1)


# 1. k_eff(3, d) = 2d + 1 > 33 first at d = 17. From then on the off-centre taps of every output
#    land outside the 33x33 map (in the padding, so they read zeros): the layer acts as a 1x1 conv.
assert min(d for d in range(1, 40) if k_eff(3, d) > 33) == 17


# 2. Pairs for stride, padding and dilation.
def atrous_conv_loops(x2d, w2d, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    h, w = x2d.shape
    kh, kw = w2d.shape
    ho = (h + 2 * ph - k_eff(kh, dh)) // sh + 1
    wo = (w + 2 * pw - k_eff(kw, dw)) // sw + 1
    y = torch.zeros(ho, wo, dtype=x2d.dtype)
    for oh in range(ho):
        for ow in range(wo):
            for i in range(kh):
                for j in range(kw):
                    ih, iw = oh * sh - ph + i * dh, ow * sw - pw + j * dw
                    if 0 <= ih < h and 0 <= iw < w:
                        y[oh, ow] += w2d[i, j] * x2d[ih, iw]
    return y


x, w = torch.randn(13, 11, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
args = ((2, 1), (3, 1), (2, 3))
torch.testing.assert_close(atrous_conv_loops(x, w, *args),
                           F.conv2d(x[None, None], w[None, None], None, *args)[0, 0])

# 3. k_eff = 2 + 1 * 2 = 4; (8 + 2 - 4) // 3 + 1 = 6 // 3 + 1 = 3.
y = F.conv2d(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 2, 2), stride=3, padding=1, dilation=3)
assert y.shape[-1] == 3
print("all solutions check out")
