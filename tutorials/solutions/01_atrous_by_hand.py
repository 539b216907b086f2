"""Solutions to the exercises of tutorial 1 (atrous convolution by hand); run it to check them."""

import torch
import torch.nn.functional as F


def k_eff(k: int, d: int) -> int:
    return k + (k - 1) * (d - 1)


# 1. k_eff(3, d) = 2d + 1 > 33 first at d = 17. With 'same' padding p = d, output o reads rows
#    o - d, o, o + d. At d = 17 both off-centre rows fall outside 0..32 only for o = 16: only the
#    centre output (16, 16) reads nothing but padding through its 8 off-centre taps. Every other
#    output still reads some image pixels (output 15 reads row 32). Only from d = 33 on do all
#    outputs read padding through their off-centre taps, and the layer acts as a 1x1 conv.
assert min(d for d in range(1, 40) if k_eff(3, d) > 33) == 17


def centre_only(d, size=33):
    """The outputs (per axis) whose off-centre taps all read padding, on a size x size map, p = d."""
    return [o for o in range(size) if o - d < 0 and o + d >= size]


assert centre_only(17) == [16] and centre_only(32) == list(range(1, 32))
assert centre_only(33) == list(range(33))
# Checked on the convolution itself: outputs equal to the centre tap alone (a 1x1 conv) exactly there.
x, w = torch.randn(1, 1, 33, 33, dtype=torch.float64), torch.randn(1, 1, 3, 3, dtype=torch.float64)
for d in (17, 32, 33, 40):
    y = F.conv2d(x, w, padding=d, dilation=d)[0, 0]
    one_by_one = (w[0, 0, 1, 1] * x[0, 0]).isclose(y)
    expected = torch.zeros(33, 33, dtype=torch.bool)
    rows = centre_only(d)
    expected[torch.tensor(rows)[:, None], torch.tensor(rows)[None, :]] = True
    assert torch.equal(one_by_one, expected), d


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


# 4. At jump 1 each 3x3 layer of rate r adds 2r to the RF: we need 1 + 2 * sum(r) >= 31, sum(r) >= 15.
#    Without holes the rates must start at 1 and each may at most roughly double (HDC, notebook 9):
#    (1, 2, 4, 8) sums to 15 with 4 layers and no hole (every offset -15..15 is reached). Three layers
#    cannot do it: the hole-free triples reach at most a sum of 13, e.g. (1, 3, 9), RF 27 < 31.
def rf_recursion(layers):
    r, j, out = 1, 1, []
    for k, s, d in layers:
        r, j = r + (k_eff(k, d) - 1) * j, j * s
        out.append((r, j))
    return out


assert rf_recursion([(3, 1, r) for r in (1, 2, 4, 8)])[-1] == (31, 1)
offsets = {0}
for r in (1, 2, 4, 8):
    offsets = {o + t * r for o in offsets for t in (-1, 0, 1)}
assert offsets == set(range(-15, 16))


def reach(rates):
    out = {0}
    for r in rates:
        out = {o + t * r for o in out for t in (-1, 0, 1)}
    return out


hole_free = [(a, b, c) for a in range(1, 21) for b in range(1, 21) for c in range(1, 21)
             if reach((a, b, c)) == set(range(-(a + b + c), a + b + c + 1))]
assert max(sum(t) for t in hole_free) == 13 and (1, 3, 9) in hole_free
print("all solutions check out")
