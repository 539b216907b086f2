"""Tests for atrous.viz: every picture renders headless (Agg) and contains the artists it promises."""

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from atrous import receptive_field as rfm
from atrous import viz

matplotlib.use("Agg")  # headless; viz draws on Figure objects, never through pyplot


def patches(ax, gid):
    return [p for p in ax.patches if p.get_gid() == gid]


def collection(ax, gid):
    found = [c for c in ax.collections if c.get_gid() == gid]
    return found[0].get_offsets() if found else np.empty((0, 2))


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dilated_kernel_numbers_taps_and_annotates_k_eff(tmp_path):
    fig = viz.plot_dilated_kernel(rates=(1, 2, 3), path=tmp_path / "kernel.png")
    assert isinstance(fig, Figure) and is_png(tmp_path / "kernel.png")
    axes = fig.axes
    assert len(axes) == 3
    n, c = 9, 4  # grid = largest k_eff (7) + 2, centre pixel 4
    for ax, d, k_eff in zip(axes, (1, 2, 3), (3, 5, 7)):
        assert sorted(int(t.get_text()) for t in ax.texts) == list(range(1, 10))
        taps = patches(ax, "tap")
        assert sorted({int(p.get_x()) for p in taps}) == [c - d, c, c + d]
        assert len(taps) == 9 and len(ax.patches) == n * n + 1  # grid cells + the dashed span
        (span,) = patches(ax, "span")
        assert span.get_width() == k_eff
        assert ax.get_xlabel() == f"k_eff = 3 + (3-1)({d}-1) = {k_eff}"
    with pytest.raises(ValueError, match="input_size"):
        viz.plot_dilated_kernel(rates=(4,), input_size=5)


def test_dilated_conv_animation_writes_one_gif_frame_per_output(tmp_path):
    path = tmp_path / "slide.gif"
    # 4x4 input, k3 d2 s2 "same" padding 2: (4 + 4 - 5) // 2 + 1 = 2 outputs per axis
    fig = viz.animate_dilated_conv(rate=2, input_size=4, stride=2, path=path)
    assert isinstance(fig, Figure) and fig.animation is not None
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 4
    assert "k_eff = 3 + (3-1)(2-1) = 5" in fig._suptitle.get_text()
    ax_in = fig.axes[0]
    assert len(patches(ax_in, "pad")) == 8 * 8 - 4 * 4  # a 2-pixel padding ring around the 4x4 input
    with pytest.raises(ValueError, match="path"):
        viz.animate_dilated_conv(path=tmp_path / "slide.png")


def test_rf_growth_plots_the_theory_for_each_stack(tmp_path):
    fig = viz.plot_rf_growth(path=tmp_path / "growth.png")
    assert is_png(tmp_path / "growth.png")
    ax_rf, ax_jump = fig.axes[:2]
    lines = {line.get_label(): list(line.get_ydata()) for line in ax_rf.lines}
    assert lines == {
        "plain": [1, 3, 5, 7, 9, 11, 13],
        "strided": [1, 3, 7, 11, 19, 27, 43],
        "atrous": [1, 3, 7, 15, 31, 63],
    }
    jumps = {line.get_label(): list(line.get_ydata()) for line in ax_jump.lines}
    assert jumps["strided"] == [1, 2, 2, 4, 4, 8, 8] and jumps["atrous"] == [1] * 6


def test_rf_growth_accepts_reports_and_rejects_unanalysable_models():
    report = rfm.receptive_field(rfm.hybrid_stack(), 65)
    fig = viz.plot_rf_growth({"hybrid": report})
    assert list(fig.axes[0].lines[0].get_ydata()) == [1, 3, 7, 13, 15, 19, 25]
    with pytest.raises(rfm.UnsupportedModelError, match="flat"):
        viz.plot_rf_growth({"flat": nn.Sequential(nn.Conv2d(3, 1, 3), nn.Flatten())}, input_size=9)


def test_gridding_shows_holes_for_equal_rates_only(tmp_path):
    fig = viz.plot_gridding(path=tmp_path / "grid.png")
    assert is_png(tmp_path / "grid.png")
    covered = []
    for ax in fig.axes:
        (image,) = ax.images
        covered.append(int(np.ma.count(image.get_array())))
        (box,) = patches(ax, "rf")
        assert box.get_width() in (13, 15)
    # rates (2, 2, 2): RF 13 but only the 7x7 even offsets; (1, 2, 3): all 13x13; (1, 2, 4): all 15x15
    assert covered == [49, 169, 225]
    assert "49/169 pixels" in fig.axes[0].get_title()


def test_aspp_coverage_over_the_photo(tmp_path):
    fig = viz.plot_aspp_coverage(path=tmp_path / "aspp.png")
    assert is_png(tmp_path / "aspp.png")
    os16, os8 = fig.axes
    assert os16.images[0].get_array().shape == (513, 513, 3)
    assert "33x33" in os16.get_title() and "65x65" in os8.get_title()
    # central feature 16 of 33: rate 6 and 12 taps land inside, rate 18 only at the centre (16 +- 18)
    assert [len(collection(os16, f"taps-in-{r}")) for r in (6, 12, 18)] == [9, 9, 1]
    assert len(collection(os16, "taps-out-18")) == 8
    # stride 8 doubles the rates: the same pixel distances (96, 192, 288 px)
    assert [len(collection(os8, f"taps-in-{r}")) for r in (12, 24, 36)] == [9, 9, 1]
    taps = collection(os16, "taps-in-6")
    assert sorted(set(taps[:, 0])) == [256 - 96, 256, 256 + 96]
    assert len(patches(os16, "image-pooling")) == 1
    assert len(collection(os8, "features")) == 65 * 65


def test_load_sample_image():
    img = viz.load_sample_image((40, 30))
    assert img.shape == (40, 30, 3) and img.dtype == np.uint8
    assert viz.load_sample_image().shape == (600, 512, 3)


def ones_conv():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    nn.init.ones_(conv.weight)
    return conv


def test_erf_heatmap_with_theoretical_box(tmp_path):
    erf = rfm.effective_receptive_field(ones_conv(), input_size=9, samples=2)
    fig = viz.plot_erf(erf, path=tmp_path / "erf.png")
    assert is_png(tmp_path / "erf.png")
    (ax,) = fig.axes
    (box,) = patches(ax, "theoretical")
    assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == (2.5, 2.5, 3, 3)
    (mass,) = patches(ax, "mass")
    assert mass.get_width() == 3  # the whole uniform 3x3 ERF is needed for 95%
    assert "theoretical RF 3x3" in ax.get_title()


def test_erf_over_an_image_and_several_models():
    img = viz.load_sample_image(33)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255
    stacks = rfm.TEACHING_STACKS
    erfs = {name: rfm.effective_receptive_field(stacks[name][0](), x) for name in ("plain", "aspp")}
    fig = viz.plot_erf(erfs, image=img)
    plain, aspp = fig.axes
    assert len(plain.images) == 2 and plain.images[0].get_array().shape == (33, 33, 3)
    assert len(patches(plain, "theoretical")) == 1
    # ASPP's image pooling resamples: no theory, only the clipped box (the whole image)
    assert not patches(aspp, "theoretical") and len(patches(aspp, "clipped")) == 1
    assert "no theory" in aspp.get_title()


def test_measured_rf_picture_compares_with_the_analysis(tmp_path):
    model = rfm.gridding_stack()
    measured = rfm.measure_receptive_field(model, 21)
    fig = viz.plot_measured_rf(measured, rfm.receptive_field(model, 21), path=tmp_path / "m.png")
    assert is_png(tmp_path / "m.png")
    (ax,) = fig.axes
    assert "measured RF 13x13" in ax.get_title() and "agrees" in ax.get_title()
    assert len(patches(ax, "clipped")) == 1 and len(patches(ax, "theoretical")) == 1
