"""Solutions to the exercises of tutorial 9 (Xception and output stride); run it to check them."""

import torch

import atrous.models as M
from atrous.receptive_field import receptive_field


def tap_spacings(net):
    """{conv name: dilation x jump of its input} for the 3x3 convs of the main path."""
    jump, out = 1, {}
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3):
            out[name] = m.dilation[0] * jump
            jump *= m.stride[0]
    return out


# 1. Xception-71 has 5 entry blocks, two of them stride 1 (blocks 1 and 3). With the stem's stride 2,
#    blocks 0 and 2 bring it to OS 8; block 4 drops its stride 2 and keeps rate 1, so the middle
#    flow (blocks 5..20) and block 21 run at rate 2, block 22 (after block 21 drops its stride) at 4.
os8, os32 = M.xception71(output_stride=8), M.xception71(output_stride=32)
geometry = [(b.stack.conv3.conv_dw.stride[0], b.stack.conv3.conv_dw.dilation[0]) for b in os8.blocks]
assert [i for i, (s, _) in enumerate(geometry) if s == 2] == [0, 2]
assert geometry[4] == (1, 1)
assert all(geometry[i] == (1, 2) for i in range(5, 22)) and geometry[22] == (1, 4)
assert tap_spacings(os8) == tap_spacings(os32)

# 2. At OS 16, layer4 runs at jump 16; each 3x3 conv adds 2 d 16 = 32 d pixels. Multi-grid (1, 2, 1)
#    gives rates 2 x (1, 2, 1) = (2, 4, 2): 32 (2 + 4 + 2) = 256 against torchvision's (1, 2, 2),
#    32 (1 + 2 + 2) = 160. So the RF is 427 + 96 = 523.
predicted = 427 + 32 * ((2 + 4 + 2) - (1 + 2 + 2))
net = M.resnet50(output_stride=16, multi_grid=(1, 2, 1))
assert [u.conv2.dilation[0] for u in net.layer4] == [2, 4, 2]
assert receptive_field(net, 65, output="out").output.rf[0].size == predicted == 523


# 3. (1, 2) reach every offset in -3..3. Adding +-r covers -3..3 shifted by r: no gap as long as
#    r - 3 <= 4, i.e. r <= 7. (1, 2, 8) misses +-4. (3, 3, 3) reaches the multiples of 3 in
#    -9..9: 7 per axis, 49 of the 19 x 19 = 361 pixels of the RF.
def reached_offsets(rates):
    offsets = {0}
    for r in rates:
        offsets = {o + t * r for o in offsets for t in (-1, 0, 1)}
    return offsets


def hole_free(rates):
    return reached_offsets(rates) == set(range(-sum(rates), sum(rates) + 1))


assert max(r for r in range(1, 20) if hole_free((1, 2, r))) == 7
assert not hole_free((1, 2, 8)) and 4 not in reached_offsets((1, 2, 8))
assert len(reached_offsets((3, 3, 3))) ** 2 == 49 and (2 * 9 + 1) ** 2 == 361
# 4. Design: the RF of four 3x3 layers is 1 + 2 * sum(rates), so we want the largest sum with M_2 <= 3.
#    Each layer can at most triple the span it is given: after (1, 3) every offset in -4..4 is reached,
#    a rate of 9 fills -13..13, and 27 fills -40..40. A search over non-decreasing schedules agrees:
from atrous.receptive_field.arithmetic import hdc_max_distance, reachable_offsets  # noqa: E402

schedules = [(1, a, b, c) for a in range(1, 30) for b in range(a, 60) for c in range(b, 120)
             if hdc_max_distance((1, a, b, c)) <= 3]
best = max(schedules, key=sum)
print("largest hole-free 4-layer schedule:", best, "RF", 1 + 2 * sum(best))
assert best == (1, 3, 9, 27) and hdc_max_distance(best) == 3
assert reachable_offsets(best) == set(range(-40, 41))  # RF 81, no hole
print("all solutions check out")
