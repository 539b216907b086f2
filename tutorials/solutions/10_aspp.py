"""Solutions to the exercises of tutorial 10 (ASPP); run it to check them."""

import warnings

import torch
import torch.nn.functional as F

import atrous.models as M
from atrous.receptive_field import receptive_field

# 1. The central output of a 65x65 map is pixel 32; its taps 32 +- r lie inside when r <= 32.
#    Of the OS-8 rates (12, 24, 36), 36 puts all 8 off-centre taps in the padding.
assert max(r for r in range(1, 70) if 0 <= 32 - r and 32 + r <= 64) == 32
with warnings.catch_warnings():
    warnings.simplefilter("error")  # no AtrousRateWarning: every rate is below 65
    report = receptive_field(M.ASPP(8, 8, (12, 24, 32, 33, 36)).eval(), 65)
cat = next(row for row in reversed(report.layers) if row.op == "cat")
centre = cat.centre_position
clipped = [row.size_at(*centre)[0] for row in report.branches(cat)[1:-1]]
assert clipped == [25, 49, 65, 1, 1]  # rate 32 just fits (65 = the whole map); 33 and 36 see one pixel

# 2. Every conv of the ASPP keeps the map's size, so its MACs are (weights) x H x W: 65^2 / 33^2 =
#    3.88 times more at OS 8 (65x65) than at OS 16 (33x33). Image pooling's 1x1 conv runs on a 1x1
#    map at both, so the whole ASPP is a little under that. A narrower ASPP shows the same ratio.
macs = {}
for os_, n in ((16, 33), (8, 65)):
    aspp = M.ASPP(64, 32, M.default_aspp_rates(os_))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.AtrousRateWarning)
        macs[os_] = M.summary(aspp, (64, n, n), receptive_field=False, show=False).total_macs
pool = 64 * 32  # the pooling branch's 1x1 conv, on a 1x1 map
assert (macs[8] - pool) * 33 ** 2 == (macs[16] - pool) * 65 ** 2
assert 3.8 < macs[8] / macs[16] < 65 ** 2 / 33 ** 2

# 3. The pooling branch in eval mode: mean over H and W, 1x1 conv, BatchNorm with the running
#    statistics, ReLU, broadcast.
torch.manual_seed(0)
pooling = M.ASPPPooling(16, 8).eval()
conv, bn = pooling[1], pooling[2]
with torch.no_grad():
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.uniform_(0.5, 2)
    bn.bias.uniform_(-1, 1)
x = torch.randn(2, 16, 9, 7)
by_hand = F.relu(F.batch_norm(F.conv2d(x.mean(dim=(2, 3), keepdim=True), conv.weight), bn.running_mean,
                              bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps))
with torch.no_grad():
    torch.testing.assert_close(pooling(x), by_hand.expand(-1, -1, 9, 7))
# 4. Design: the central output of a 65x65 map is pixel 32; a tap 32 +- r stays inside when r <= 32.
#    Spreading three rates as widely as possible under that bound, with the smallest one still adding
#    context beyond a 3x3 at OS 8, gives for example (8, 20, 32): all 27 taps inside, the widest
#    reaching 32 * 8 = 256 pixels of the 513x513 image to each side.
def taps_inside(size, rate):
    c = (size - 1) // 2
    return sum(0 <= c + dy * rate < size and 0 <= c + dx * rate < size
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


assert [taps_inside(65, r) for r in (8, 20, 32)] == [9, 9, 9]
assert taps_inside(65, 33) == 1 and taps_inside(65, 36) == 1  # one more pixel and only the centre is left
print("all solutions check out")
