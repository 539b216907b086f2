"""Tests for atrous.receptive_field: hand-computed RFs, analytic vs gradient-measured RFs, branches, ERF."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn

from atrous import receptive_field as rfm
from atrous.receptive_field import (
    AxisRF,
    EmptyERFWarning,
    Parallel,
    UnsupportedModelError,
    compose,
    conv_output_size,
    effective_kernel_size,
    effective_receptive_field,
    input_box,
    input_box_clipped,
    measure_receptive_field,
    measure_receptive_fields,
    receptive_field,
)

torch.manual_seed(0)


def corners_and_centre(size):
    H, W = size
    return sorted({(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1), ((H - 1) // 2, (W - 1) // 2)})


def assert_clipped_matches_measurement(model, input_size, positions=None, in_channels=None):
    report = receptive_field(model, input_size, in_channels=in_channels)
    assert report.supported, report.problems
    positions = positions or corners_and_centre(report.output.size)
    measured = measure_receptive_fields(model, input_size, positions, in_channels=in_channels)
    for m in measured:
        assert m.output_size == report.output.size
        assert m.box == report.output.box_clipped(*m.position), f"position {m.position}"
    return report


# ---------------------------------------------------------------------------------------------
# Arithmetic, written out by hand
# ---------------------------------------------------------------------------------------------


def test_effective_kernel_size():
    assert [effective_kernel_size(3, d) for d in (1, 2, 3, 6)] == [3, 5, 7, 13]
    assert effective_kernel_size(1, 12) == 1
    with pytest.raises(ValueError, match="dilation"):
        effective_kernel_size(3, 0)


@pytest.mark.parametrize(
    "size, k, s, p, d, ceil, expected",
    [
        (7, 3, 1, 0, 1, False, 5),
        (7, 3, 2, 1, 1, False, 4),
        (9, 3, 1, 2, 2, False, 9),  # "same" dilated conv
        (33, 3, 1, 18, 18, False, 33),
        (10, 3, 2, 1, 1, True, 6),  # ceil_mode adds a window
        (9, 2, 2, 1, 1, True, 5),  # ... unless it would start in the right padding
    ],
)
def test_conv_output_size_matches_pytorch(size, k, s, p, d, ceil, expected):
    assert conv_output_size(size, k, s, p, d, ceil) == expected
    x = torch.zeros(1, 1, size, size)
    if ceil:
        y = F.max_pool2d(x, k, s, p, d, ceil_mode=True)
    else:
        y = F.conv2d(x, torch.zeros(1, 1, k, k), stride=s, padding=p, dilation=d)
    assert y.shape[-1] == expected


def test_compose_plain_and_atrous_chains():
    assert [r.size for r in compose([(3, 1, 1, 1)] * 4)] == [3, 5, 7, 9]
    # exponential rates: r = 1 + 2 (1 + 2 + 4 + 8)
    assert [r.size for r in compose([(3, 1, d, d) for d in (1, 2, 4, 8)])] == [3, 7, 15, 31]
    # strides multiply the jump and every later kernel's contribution
    assert [(r.size, r.jump) for r in compose([(3, 2, 1), (3, 2, 1), (3, 1, 1)])] == [(3, 2), (7, 4), (15, 4)]
    with pytest.raises(ValueError, match=r"layers\[1\]"):
        compose([(3,), ()])


def test_single_dilated_conv_hand_computed():
    model = nn.Conv2d(1, 1, 3, padding=2, dilation=2)
    report = receptive_field(model, 9)
    row = report.output
    assert row.size == (9, 9)
    assert row.rf == (AxisRF(5, 1, 0.0), AxisRF(5, 1, 0.0))
    assert input_box(report, 0, 0) == (-2, -2, 2, 2)  # the first output's RF half lies in the padding
    assert input_box_clipped(report, 0, 0) == (0, 0, 2, 2)
    assert input_box(report, 4, 6) == (2, 4, 6, 8)
    assert input_box_clipped(report, 4, 6) == (2, 4, 6, 8)


def test_chain_with_stride_dilation_padding_and_pooling_hand_computed():
    # conv k3 s2 p0:      r = 3,              j = 2, start = 0 + (1 - 0) * 1   = 1
    # conv k3 d2 p1:      r = 3 + 4 * 2 = 11, j = 2, start = 1 + (2 - 1) * 2   = 3
    # maxpool k2 s2 p0:   r = 11 + 1 * 2 = 13, j = 4, start = 3 + (0.5 - 0) * 2 = 4
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1, dilation=2), nn.MaxPool2d(2)
    )
    report = receptive_field(model, 17)
    assert [r.size for r in report.layers] == [(17, 17), (8, 8), (6, 6), (3, 3)]
    assert [r.rf[1] for r in report.layers[1:]] == [AxisRF(3, 2, 1.0), AxisRF(11, 2, 3.0), AxisRF(13, 4, 4.0)]
    # output 0: centre 4, 13 wide: pixels -2 .. 10 (two rows of the first conv read padding)
    assert input_box(report, 0, 0) == (-2, -2, 10, 10)
    assert input_box(report, 1, 2) == (2, 6, 14, 18)
    assert input_box_clipped(report, 0, 0) == (0, 0, 10, 10)
    assert [r.op for r in report.layers] == ["input", "Conv2d", "Conv2d", "MaxPool2d"]
    assert [r.params for r in report.layers[1:]] == ["k3 s2 p0 d1", "k3 s1 p1 d2", "k2 s2 p0 d1"]


def test_dilation_moves_the_centre_of_an_unpadded_conv():
    # A tool that ignores dilation in the centre update would put output 0's centre at 1, not d.
    for d in (2, 3):
        report = receptive_field(nn.Conv2d(1, 1, 3, dilation=d), 20)
        assert report.output.rf[0].start == d
        assert input_box(report, 0, 0) == (0, 0, 2 * d, 2 * d)
        assert measure_receptive_field(nn.Conv2d(1, 1, 3, dilation=d), 20, (0, 0)).box == (0, 0, 2 * d, 2 * d)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_non_square_geometry_and_same_padding():
    model = nn.Conv2d(1, 1, (3, 4), padding="same", dilation=(2, 1))
    report = receptive_field(model, (11, 12))
    v, h = report.output.rf
    assert (v.size, v.start) == (5, 0.0)
    # even kernel: PyTorch pads total // 2 = 1 on the left, so output 0 sees -1 .. 2, centre 0.5
    assert (h.size, h.start) == (4, 0.5)
    assert input_box(report, 0, 0) == (-2, -1, 2, 2)
    assert_clipped_matches_measurement(model, (11, 12))


def test_input_box_accepts_axis_pairs_and_checks_arguments():
    pair = (AxisRF(5, 2, 0.5), AxisRF(3, 1, 0.0))
    assert input_box(pair, 1, 2) == (0, 1, 4, 3)
    report = receptive_field(nn.Conv2d(1, 1, 3), 5)
    with pytest.raises(IndexError, match="outside"):
        input_box(report, 3, 0)
    with pytest.raises(TypeError, match="rf_info"):
        input_box_clipped("conv", 0, 0)
    with pytest.raises(ValueError, match="input_size"):
        receptive_field(nn.Conv2d(1, 1, 3), (0, 5))
    with pytest.raises(ValueError, match="merge"):
        Parallel(nn.Identity(), merge="max")


# ---------------------------------------------------------------------------------------------
# Analytic == measured on random stacks
# ---------------------------------------------------------------------------------------------


@st.composite
def layer_specs(draw):
    kind = draw(st.sampled_from(["conv", "conv", "conv", "max", "avg"]))
    if kind == "conv":
        k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        p = tuple(draw(st.integers(0, d[a] * (k[a] - 1))) for a in (0, 1))
        return kind, k, s, p, d, False
    k = draw(st.integers(1, 3))
    d = draw(st.integers(1, 2)) if kind == "max" else 1
    s, p = draw(st.integers(1, 2)), draw(st.integers(0, k // 2))  # PyTorch: pooling pads at most k // 2
    return kind, (k, k), (s, s), (p, p), (d, d), draw(st.booleans())


def build(specs, channels=2):
    mods, c = [], 1
    for kind, k, s, p, d, ceil in specs:
        if kind == "conv":
            mods += [nn.Conv2d(c, channels, k, s, p, d), nn.ReLU()]
            c = channels
        elif kind == "max":
            mods.append(nn.MaxPool2d(k, s, p, d, ceil_mode=ceil))
        else:
            mods.append(nn.AvgPool2d(k, s, p, ceil_mode=ceil))
    return nn.Sequential(*mods)


def fitting_size(specs, axis, limit=400):
    """Smallest input length whose central output's unclipped RF lies inside the input."""
    rf = compose([(k[axis], s[axis], p[axis], d[axis]) for _, k, s, p, d, _ in specs])[-1]
    for n in range(1, limit):
        try:
            m = n
            for _, k, s, p, d, ceil in specs:
                m = conv_output_size(m, k[axis], s[axis], p[axis], d[axis], ceil)
        except ValueError:
            continue
        lo, hi = rf.interval((m - 1) // 2)
        if lo >= 0 and hi < n:
            return n
    return None


@given(st.lists(layer_specs(), min_size=1, max_size=4), st.integers(0, 9), st.integers(0, 9))
def test_random_stacks_analytic_equals_measured(specs, extra_h, extra_w):
    sizes = [fitting_size(specs, a) for a in (0, 1)]
    assume(None not in sizes)
    size = (sizes[0] + extra_h, sizes[1] + extra_w)
    model = build(specs)
    report = receptive_field(model, size)
    assert report.supported, report.problems
    out = report.output
    cy, cx = out.centre_position
    measured = measure_receptive_fields(model, size, [(cy, cx), *corners_and_centre(out.size)])
    centre = measured[0]
    # extent and centre at a central output: theory (unclipped) = exact clipped = gradient support
    assert centre.box == out.box(cy, cx) == out.box_clipped(cy, cx)
    assert centre.size == (out.rf[0].size, out.rf[1].size)
    assert centre.centre == (out.rf[0].centre(cy), out.rf[1].centre(cx))
    # anywhere, borders included: the clipped analysis equals the measured support's bounding box
    for m in measured[1:]:
        assert m.box == out.box_clipped(*m.position)


@given(st.lists(layer_specs(), min_size=1, max_size=3), st.integers(1, 30), st.integers(1, 30))
def test_random_stacks_on_small_inputs_clipped_equals_measured(specs, h, w):
    model = build(specs)
    try:
        report = receptive_field(model, (h, w))
    except RuntimeError:
        assume(False)  # the input is too small for this stack
    assert report.supported, report.problems
    for m in measure_receptive_fields(model, (h, w), corners_and_centre(report.output.size)):
        assert m.box == report.output.box_clipped(*m.position)


# ---------------------------------------------------------------------------------------------
# Parallel branches
# ---------------------------------------------------------------------------------------------


def test_aspp_like_union_hand_computed():
    # stem: r 3, j 2, start 0; branches add (k_eff - 1) * 2: 1x1 -> 3, d2 -> 3 + 4*2 = 11, d4 -> 3 + 8*2 = 19
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=1),
        Parallel(
            nn.Conv2d(2, 2, 1),
            nn.Conv2d(2, 2, 3, padding=2, dilation=2),
            nn.Conv2d(2, 2, 3, padding=4, dilation=4),
        ),
    )
    report = receptive_field(model, 65)
    union = report.output
    assert union.op == "cat" and union.channels == 6
    assert [b.rf[0].size for b in report.branches(union)] == [3, 11, 19]
    assert union.rf == (AxisRF(19, 2, 0.0), AxisRF(19, 2, 0.0))
    assert union.params == "union #2,#3,#4"
    assert_clipped_matches_measurement(model, 65)
    assert measure_receptive_field(model, 65).size == (19, 19)


class PadThenConv(nn.Module):
    """Pads right/bottom by 2, then an unpadded 3x3: output 0 sees pixels 0..2 (centre 1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 2, 0, 2)))


@pytest.mark.parametrize("merge", ["cat", "sum"])
def test_union_of_off_centre_branches_hand_computed(merge):
    # branch A sees -1..1, branch B sees 0..2: the union sees -1..2 (4 pixels, centre 0.5)
    model = Parallel(nn.Conv2d(1, 1, 3, padding=1), PadThenConv(), merge=merge)
    report = receptive_field(model, 12)
    a, b = report.branches(report.output)
    assert a.rf[0] == AxisRF(3, 1, 0.0) and b.rf[0] == AxisRF(3, 1, 1.0)
    assert report.output.rf == (AxisRF(4, 1, 0.5), AxisRF(4, 1, 0.5))
    assert report.output.op == ("cat" if merge == "cat" else "add")
    assert input_box(report, 5, 5) == (4, 4, 7, 7)
    assert measure_receptive_field(model, 12, (5, 5)).box == (4, 4, 7, 7)


class CroppedBranches(nn.Module):
    """Random-geometry stride-1 branches cropped to a common size and concatenated."""

    def __init__(self, branches, crops):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.crops = crops

    def forward(self, x):
        outs = [b(x) for b in self.branches]
        m = min(o.shape[-1] for o in outs)
        return torch.cat([o[..., c:c + m - 2, c:c + m - 2] for o, c in zip(outs, self.crops)], dim=1)


@given(
    st.lists(
        st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(0, 6), st.integers(0, 2)),
        min_size=2,
        max_size=4,
    ),
    st.integers(1, 2),
)
def test_random_branches_union_equals_measured(branch_specs, stem_stride):
    branches = []
    for k, d, p, _ in branch_specs:
        branches.append(nn.Conv2d(2, 2, k, padding=min(p, d * (k - 1)), dilation=d))
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=stem_stride, padding=1),
                          CroppedBranches(branches, [c for *_, c in branch_specs]))
    n = 64
    report = receptive_field(model, n)
    assert report.supported, report.problems
    out = report.output
    rows = report.branches(out)
    assert len(rows) == len(branches)
    cy, cx = out.centre_position
    boxes = [r.box(cy, cx) for r in rows]
    tops, lefts, bottoms, rights = zip(*boxes)
    hull = (min(tops), min(lefts), max(bottoms), max(rights))
    assert out.box(cy, cx) == hull  # the union is the hull of the branches
    measured = measure_receptive_fields(model, n, [(cy, cx), *corners_and_centre(out.size)])
    assert measured[0].box == hull
    for m in measured:
        assert m.box == out.box_clipped(*m.position)


# ---------------------------------------------------------------------------------------------
# Model zoo: residual adds, resampling, pooling, crops, attention, described modules
# ---------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride=1, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as torchvision does
        return self.relu(out)


def mini_resnet(dilated=False):
    return nn.Sequential(
        nn.Conv2d(3, 4, 7, 2, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
        BasicBlock(4, 4), BasicBlock(4, 6, stride=1 if dilated else 2, dilation=2 if dilated else 1),
    )


class MiniDeepLabV3Plus(nn.Module):
    """Stride-4 low-level features, stride-8 high-level, ASPP with image pooling, x2 bilinear decoder
    upsampling, concatenation, and a final resize to the input size."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, 2, 1), nn.ReLU())
        self.high = nn.Sequential(nn.Conv2d(4, 4, 3, 2, 1), nn.ReLU())
        self.aspp = Parallel(nn.Conv2d(4, 2, 1), nn.Conv2d(4, 2, 3, padding=2, dilation=2),
                             nn.Conv2d(4, 2, 3, padding=3, dilation=3), rfm.ImagePooling(4, 2))
        self.project = nn.Conv2d(8, 4, 1)
        self.reduce = nn.Conv2d(4, 2, 1)
        self.head = nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, x):
        low = self.stem(x)
        high = self.project(self.aspp(self.high(low)))
        high = F.interpolate(high, scale_factor=2, mode="bilinear", align_corners=False)
        high = high[..., : low.shape[-2], : low.shape[-1]]
        y = self.head(torch.cat([high, self.reduce(low)], dim=1))
        return {"out": F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)}


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x = self.conv(x)
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True))).expand_as(x)


class CropAndResample(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, stride=2)
        self.up = nn.Upsample(scale_factor=2, mode=mode)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        x = self.up(self.conv(x))[:, :, 1:-1, 2:]  # crops are 1-tap windows with negative padding
        x = F.pad(x, (1, 0, 2, 1))
        a, b = self.conv2(x).chunk(2, dim=1)
        return torch.cat([a, 2 * b], dim=1)


class UnfoldConv(nn.Module):
    """A convolution computed without conv2d (like our compiled ops): it describes its geometry."""

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0, dilation=1, describe=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in * kernel_size * kernel_size))
        self.geometry = (kernel_size, stride, padding, dilation)
        if describe:
            self.kernel_size, self.stride = kernel_size, stride
            self.padding, self.dilation = padding, dilation

    def forward(self, x):
        k, s, p, d = self.geometry
        n = [(x.shape[a] + 2 * p - d * (k - 1) - 1) // s + 1 for a in (-2, -1)]
        cols = F.unfold(x, k, dilation=d, padding=p, stride=s)
        return (self.weight @ cols).view(x.shape[0], -1, *n)


ZOO = {
    "resnet": (mini_resnet, 61),
    "dilated resnet": (lambda: mini_resnet(dilated=True), 47),
    "deeplabv3+": (MiniDeepLabV3Plus, 67),
    "deeplabv3+ dyadic": (MiniDeepLabV3Plus, 64),
    "squeeze-excite": (SqueezeExcite, 21),
    "crop, pad, nearest": (lambda: CropAndResample("nearest"), 23),
    "crop, pad, bilinear": (lambda: CropAndResample("bilinear"), 24),
    "described unfold conv": (
        lambda: nn.Sequential(UnfoldConv(3, 2, 3, 2, 2, 2), nn.ReLU(), UnfoldConv(2, 2, 3, 1, 1)),
        25,
    ),
    "aspp stack": (lambda: rfm.aspp_stack(8, (2, 4, 6)), 65),
    "adaptive uneven": (
        lambda: nn.Sequential(
            nn.Conv2d(3, 2, 3), nn.AdaptiveMaxPool2d((4, 5)), nn.Upsample(size=(9, 7), mode="nearest-exact")
        ),
        19,
    ),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_clipped_analysis_equals_measurement(name):
    factory, n = ZOO[name]
    report = assert_clipped_matches_measurement(factory(), (n, n + 2))
    assert not report.problems


def test_residual_add_is_a_union_and_theory_matches_at_the_centre():
    model = mini_resnet()
    report = receptive_field(model, 99)
    adds = [r for r in report.layers if r.op == "add_"]
    assert len(adds) == 2 and all(len(r.parents) == 2 for r in adds)
    out = report.output
    # stem: r 7 j 2; pool: r 11 j 4; block 1: +4*4 +... final layer theory below, measured at the centre
    cy, cx = out.centre_position
    assert measure_receptive_field(model, 99).box == out.box(cy, cx)
    assert out.rf[0].jump == 8


def test_resampled_rows_have_no_theory_and_say_so():
    report = receptive_field(MiniDeepLabV3Plus(), 64)
    out = report.output
    assert out.op == "interpolate" and out.rf is None
    with pytest.raises(UnsupportedModelError, match="not translation-equivariant"):
        input_box(report, 10, 10)
    assert input_box_clipped(report, 10, 10) is not None
    assert "*: not translation-equivariant" in report.table()


def test_undescribed_compiled_style_module_is_reported_not_guessed():
    described = receptive_field(nn.Sequential(UnfoldConv(1, 1, 3, padding=1)), 9, in_channels=1)
    assert described.supported and described.output.rf[0] == AxisRF(3, 1, 0.0)
    plain = receptive_field(nn.Sequential(UnfoldConv(1, 1, 3, padding=1, describe=False)), 9, in_channels=1)
    assert not plain.supported
    assert any("unfold" in p for p in plain.problems)


class Opaque(nn.Module):
    """Computes outside torch (as a compiled op would), without describing its geometry."""

    def forward(self, x):
        return torch.from_numpy(np.ascontiguousarray(x.detach().numpy()[..., ::-1]))


def test_tensor_from_an_untraceable_op_is_reported():
    report = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), Opaque(), nn.Conv2d(1, 1, 3)), 9)
    assert not report.supported
    assert "cannot see" in report.problems[0]
    with pytest.raises(UnsupportedModelError, match="cannot be analysed"):
        input_box(report, 0, 0)


def test_lying_geometry_is_caught():
    class Liar(nn.Module):
        kernel_size, stride, padding, dilation = 3, 1, 1, 1  # claims "same", computes "valid"

        def forward(self, x):
            return F.avg_pool2d(x, 3, 1, 0)

    report = receptive_field(nn.Sequential(Liar()), 9)
    assert not report.supported
    assert "produced 7x7" in report.problems[0]


def test_classifier_head_is_unsupported_but_the_trunk_is_analysed():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    report = receptive_field(model, 8)
    assert not report.supported
    assert "flatten" in report.problems[0]
    assert report["0"].rf[0] == AxisRF(3, 1, 0.0)
    assert "unsupported" in report.table()


def test_group_norm_is_passed_through_with_a_warning():
    report = receptive_field(nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4)), 9)
    assert report.supported and report.output.rf[0].size == 3
    assert "group_norm" in report.warnings[0]


def test_analysis_and_measurement_leave_the_model_alone():
    model = mini_resnet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    receptive_field(model, 33)
    measure_receptive_field(model, 33)
    effective_receptive_field(model, input_size=33, samples=2)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_measurement_replaces_max_pooling_by_its_taps():
    # With the max kept, the gradient would reach one pixel of the 3x3 window.
    for pool in (nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(2, 2, 0, 2, ceil_mode=True), nn.AdaptiveMaxPool2d(3)):
        model = nn.Sequential(nn.Conv2d(1, 1, 1), pool)
        assert_clipped_matches_measurement(model, 11)
    assert measure_receptive_field(nn.MaxPool2d(3, 2, 1), 11, in_channels=1).size == (3, 3)


def test_table_lists_layers_branches_and_centres():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        Parallel(nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 3, padding=3, dilation=3)),
    )
    text = receptive_field(model, 15).table()
    lines = text.splitlines()
    assert lines[0].split() == ["#", "layer", "op", "params", "size", "C", "RF", "jump", "start", "RF@centre"]
    row = next(line for line in lines if "k3 s1 p3 d3" in line).split()
    assert row[1:] == ["1.branches.1", "Conv2d", "k3", "s1", "p3", "d3", "15", "2", "9", "1", "0", "9"]
    cat = next(line for line in lines if " cat " in line).split()
    assert cat[3:5] == ["union", "#2,#3"] and cat[-4:] == ["9", "1", "0", "9"]
    assert "central position (7, 7) sees input box (3, 3, 11, 11)" in text


# ---------------------------------------------------------------------------------------------
# Effective receptive field
# ---------------------------------------------------------------------------------------------


def ones_conv(n_layers):
    model = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(n_layers)])
    for m in model:
        nn.init.ones_(m.weight)
    return model


def test_erf_of_one_linear_conv_is_uniform_over_its_window():
    erf = effective_receptive_field(ones_conv(1), input_size=9, samples=3)
    assert erf.position == (4, 4) and erf.centre == (4.0, 4.0) and erf.centre_source == "theory"
    assert erf.theoretical_box == (3, 3, 5, 5)
    np.testing.assert_allclose(erf.heatmap[3:6, 3:6], np.full((3, 3), 1 / 9))
    shares = erf.mass_in_squares([1, 3, 5])
    assert shares == pytest.approx({1: 1 / 9, 3: 1.0, 5: 1.0})


def test_erf_of_two_linear_convs_is_a_triangle_product():
    # paths per axis: 1 2 3 2 1 (of 9); the 3x3 centre holds (2+3+2)^2 / 81 of the mass
    erf = effective_receptive_field(ones_conv(2), torch.randn(2, 1, 11, 11))
    np.testing.assert_allclose(erf.heatmap[3:8, 5], np.array([1, 2, 3, 2, 1]) * 3 / 81)
    shares = erf.mass_in_squares([1, 3, 5])
    assert shares == pytest.approx({1: 9 / 81, 3: 49 / 81, 5: 1.0})
    assert erf.side_for_mass(0.5) == 3 and erf.side_for_mass(0.7) == 5
    assert erf.samples == 2


def test_erf_checks_its_arguments():
    with pytest.raises(ValueError, match="input_size"):
        effective_receptive_field(ones_conv(1))
    with pytest.raises(ValueError, match="inputs"):
        effective_receptive_field(ones_conv(1), torch.zeros(5, 5))
    erf = effective_receptive_field(ones_conv(1), input_size=5, samples=1)
    with pytest.raises(ValueError, match="fraction"):
        erf.side_for_mass(1.5)


# ---------------------------------------------------------------------------------------------
# Teaching stacks
# ---------------------------------------------------------------------------------------------


def test_teaching_stacks_final_rfs():
    expected = {"plain": 13, "strided": 43, "atrous": 63, "gridding": 13, "hybrid": 25, "multigrid": 29}
    for name, size in expected.items():
        model = rfm.TEACHING_STACKS[name][0]()
        report = receptive_field(model, 129)
        assert report.output.rf[0].size == size, name
        assert measure_receptive_field(model, 129).size == (size, size), name


# ---------------------------------------------------------------------------------------------
# The project's compiled ops
# ---------------------------------------------------------------------------------------------


def atrous_ops():
    try:
        from atrous import ops
    except Exception as e:  # noqa: BLE001 - the extension may not be built in this checkout
        pytest.skip(f"atrous.ops is unavailable: {e}")
    return ops


class FunctionalOps(nn.Module):
    """Calls the compiled ops directly, with no geometry attributes: the tracer follows the ops."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.w2 = nn.Parameter(torch.randn(4, 1, 2, 2))
        self.w3 = nn.Parameter(torch.randn(2, 4, 1, 1))

    def forward(self, x):
        ops = atrous_ops()
        x = ops.atrous_conv2d(x, self.w1, None, 2, 2, 2)
        x = ops.depthwise_conv2d(x, self.w2, None, 1, "same", 3)  # even span 3: one extra pixel right/bottom
        return ops.pointwise_conv2d(x, self.w3)


class DescribedOpsConv(nn.Module):
    """A module around a compiled op that states its geometry, as atrous.models' modules will."""

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0, dilation=1):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel_size, kernel_size))

    def forward(self, x):
        return atrous_ops().atrous_conv2d(x, self.weight, None, self.stride, self.padding, self.dilation)


def test_compiled_ops_called_functionally_are_followed():
    atrous_ops()
    report = assert_clipped_matches_measurement(FunctionalOps(), (23, 26))
    assert [r.op for r in report.layers[1:]] == [
        "atrous::atrous_conv2d", "pad", "atrous::depthwise_conv2d", "atrous::pointwise_conv2d"]
    # k3 d2 s2 p2: r 5, j 2, start 0; k2 d3 'same' (left 1): r 5 + 3*2 = 11, start 0 + (1.5 - 1) * 2 = 1
    assert report.output.rf[0] == AxisRF(11, 2, 1.0)


def test_compiled_ops_inside_described_modules():
    atrous_ops()
    model = nn.Sequential(DescribedOpsConv(3, 4, 3, 2, 1), nn.ReLU(), DescribedOpsConv(4, 4, 3, 1, 3, 3))
    report = assert_clipped_matches_measurement(model, 31)
    assert [r.op for r in report.layers[1:]] == ["DescribedOpsConv", "DescribedOpsConv"]
    assert report.output.rf[0] == AxisRF(3 + 6 * 2, 2, 0.0)


def test_erf_default_objective_is_the_predicted_class_log_probability():
    torch.manual_seed(0)
    model = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 7, 7)
    erf = effective_receptive_field(model, x)
    # by hand: d log softmax(y)[k*] / d x at the centre, k* the predicted class
    xg = x.clone().requires_grad_(True)
    scores = model(xg)[0, :, 3, 3]
    torch.log_softmax(scores, 0)[scores.argmax()].backward()
    expected = xg.grad.abs().sum(1)[0].double().numpy()
    np.testing.assert_allclose(erf.heatmap, expected / expected.sum(), rtol=1e-5)
    # the old objective, the sum of the scores, is kept as an option and differs
    old = effective_receptive_field(model, x, objective="sum")
    assert not np.allclose(old.heatmap, erf.heatmap)
    with pytest.raises(ValueError, match="objective"):
        effective_receptive_field(model, x, objective="max")


def test_an_all_zero_erf_warns():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU())
    nn.init.zeros_(model[0].weight)
    nn.init.constant_(model[0].bias, -1.0)  # every ReLU dead: no gradient reaches the input
    with pytest.warns(EmptyERFWarning, match="all zero"):
        erf = effective_receptive_field(model, input_size=5, samples=1)
    assert erf.heatmap.sum() == 0
