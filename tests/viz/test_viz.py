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
        assert ax.get_xlabel() == rf"$k_{{\mathrm{{eff}}}} = 3 + (3-1)({d}-1) = {k_eff}$"
    with pytest.raises(ValueError, match="input_size"):
        viz.plot_dilated_kernel(rates=(4,), input_size=5)


def test_dilated_conv_animation_writes_one_gif_frame_per_output(tmp_path):
    path = tmp_path / "slide.gif"
    # 4x4 input, k3 d2 s2 "same" padding 2: (4 + 4 - 5) // 2 + 1 = 2 outputs per axis
    fig = viz.animate_dilated_conv(rate=2, input_size=4, stride=2, path=path)
    assert isinstance(fig, Figure) and fig.animation is not None
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 4
        assert min(gif.size) >= 500  # readable: 10 x 5.6 inches at 100 dpi
    assert r"$k_{\mathrm{eff}} = 3 + (3-1)(2-1) = 5$" in fig._suptitle.get_text()
    ax_in = fig.axes[0]
    assert len(patches(ax_in, "pad")) == 8 * 8 - 4 * 4  # a 2-pixel padding ring around the 4x4 input
    with pytest.raises(ValueError, match="path"):
        viz.animate_dilated_conv(path=tmp_path / "slide.png")
    with pytest.raises(ValueError, match="dpi"):
        viz.animate_dilated_conv(dpi=60)
    # without padding the output shrinks by k_eff - 1 = 4: a 7x7 input gives 3x3 outputs, no padding cells
    unpadded = viz.animate_dilated_conv(rate=2, input_size=7, padding=0)
    assert not patches(unpadded.axes[0], "pad") and len(patches(unpadded.axes[1], "output")) == 9


def line(ax, gid):
    (found,) = [ln for ln in ax.lines if ln.get_gid() == gid]
    return found


def ydata(ax, gid):
    return [float(v) for v in line(ax, gid).get_ydata()]


def nondecreasing(values):
    values = [v for v in values if not np.isnan(v)]
    return all(b >= a for a, b in zip(values, values[1:]))


def test_rf_growth_plots_theory_clipped_and_jump_apart_on_a_shared_axis(tmp_path):
    fig = viz.plot_rf_growth(path=tmp_path / "growth.png")
    assert is_png(tmp_path / "growth.png")
    ax_rf, ax_clip, ax_jump = fig.axes[:3]
    shared = ax_rf.get_shared_x_axes()
    assert shared.joined(ax_rf, ax_jump) and shared.joined(ax_rf, ax_clip)
    assert {n: ydata(ax_rf, f"theory-{n}") for n in ("plain", "strided", "atrous")} == {
        "plain": [1, 3, 5, 7, 9, 11, 13],
        "strided": [1, 3, 7, 11, 19, 27, 43],
        "atrous": [1, 3, 7, 15, 31, 63],
    }
    # 129-pixel input: nothing is clipped at the centre
    assert ydata(ax_clip, "clipped-strided") == [1, 3, 7, 11, 19, 27, 43]
    assert ydata(ax_jump, "jump-strided") == [1, 2, 2, 4, 4, 8, 8]
    assert ydata(ax_jump, "jump-atrous") == [1] * 6
    # rendered math, distinct marker and line style per network, a legend entry for each
    assert "$" in ax_rf.get_title() and "$" in ax_jump.get_title()
    styles = {(line(ax_rf, f"theory-{n}").get_marker(), str(line(ax_rf, f"theory-{n}").get_linestyle()))
              for n in ("plain", "strided", "atrous")}
    assert len(styles) == 3
    assert {t.get_text() for t in ax_rf.get_legend().get_texts()} >= {"plain", "strided", "atrous"}
    assert not [t for t in fig.texts if t.get_gid() == "coincide-note"]


def test_rf_growth_draws_aspp_branches_as_markers_and_never_decreases():
    fig = viz.plot_rf_growth({"aspp": rfm.aspp_stack()}, input_size=129)
    ax_rf, ax_clip, ax_jump = fig.axes[:3]
    theory, clipped = ydata(ax_rf, "theory-aspp"), ydata(ax_clip, "clipped-aspp")
    assert nondecreasing(theory) and nondecreasing(clipped)
    # stem to 31 px, then the rate-18 branch (the trunk), then concatenation and projection (no theory)
    assert theory[:6] == [1, 3, 7, 15, 31, 607] and np.isnan(theory[6:]).all()
    assert clipped[-1] == 129
    # the other branches: 1x1, rates 6 and 12 as markers (no line) at the trunk's step, image pooling
    # without theory (NaN) but with the whole image clipped
    side = line(ax_rf, "branches-aspp")
    assert side.get_linestyle() == "None" and set(side.get_xdata()) == {5}
    assert sorted(v for v in side.get_ydata() if not np.isnan(v)) == [31, 223, 415]
    assert 129 in list(line(ax_clip, "branches-aspp").get_ydata())
    labels = [t.get_text() for t in ax_rf.texts if t.get_gid() == "branch-label"]
    assert len(labels) == 4 and any("d18" in t for t in labels)
    # no jump is drawn for the pooling branch (no "output stride" for it)
    assert max(v for v in ydata(ax_jump, "jump-aspp") if not np.isnan(v)) == 16


def test_rf_growth_of_a_residual_model_follows_the_trunk_and_notes_coinciding_curves():
    model = rfm.conv_stack([(3, 1, 1, 1), (3, 2, 1, 1)])
    res = nn.Sequential(model, rfm.Parallel(rfm.conv_stack([(3, 1, 1, 1)] * 2, in_channels=4),
                                            nn.Conv2d(4, 4, 1), merge="sum"))
    fig = viz.plot_rf_growth({"a": res, "b": rfm.receptive_field(res, 33)}, input_size=33)
    ax_rf = fig.axes[0]
    for name in ("a", "b"):
        assert nondecreasing(ydata(ax_rf, f"theory-{name}"))
        # 5 + 2 (3 - 1) 2: through the two 3x3 convs, not the shortcut
        assert ydata(ax_rf, f"theory-{name}")[-1] == 13
        assert ydata(ax_rf, f"branches-{name}") == [5]  # the 1x1 shortcut keeps the stem's RF
    (note,) = [t for t in fig.texts if t.get_gid() == "coincide-note"]
    assert "a, b coincide" in note.get_text()
    # the two series stay visible: different markers, the first hollow and larger
    a, b = line(ax_rf, "theory-a"), line(ax_rf, "theory-b")
    assert a.get_marker() != b.get_marker() and a.get_markersize() > b.get_markersize()


def test_rf_growth_rejects_unanalysable_models():
    with pytest.raises(rfm.UnsupportedModelError, match="flat"):
        viz.plot_rf_growth({"flat": nn.Sequential(nn.Conv2d(3, 1, 3), nn.Flatten())}, input_size=9)


def test_gridding_shows_holes_for_equal_rates_only(tmp_path):
    fig = viz.plot_gridding(path=tmp_path / "grid.png")
    assert is_png(tmp_path / "grid.png")
    covered = []
    panels = [ax for ax in fig.axes if ax.get_gid() != "colorbar"]
    assert len(panels) == 3 and len(fig.axes) == 4  # and one colourbar
    for ax in panels:
        (image,) = ax.images
        covered.append(int(np.ma.count(image.get_array())))
        (box,) = patches(ax, "rf")
        assert box.get_width() in (13, 15)
    # rates (2, 2, 2): RF 13 but only the 7x7 even offsets; (1, 2, 3): all 13x13; (1, 2, 4): all 15x15
    assert covered == [49, 169, 225]
    assert "49/169 pixels" in panels[0].get_title()
    assert image.cmap.name.startswith("magma")


def test_aspp_coverage_over_the_photo(tmp_path):
    fig = viz.plot_aspp_coverage(path=tmp_path / "aspp.png")
    assert is_png(tmp_path / "aspp.png")
    os16, os8 = fig.axes
    assert os16.images[0].get_array().shape == (513, 513)
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
    # legible on the photo: dimmed grey under the marks, black feature dots, a legend entry for every
    # kind of mark (image pooling and taps in the padding included)
    assert os16.images[0].get_array().ndim == 2
    labels = [t.get_text() for t in os16.get_legend().get_texts()]
    assert {"image pooling: the whole image", "rate 18: tap in the zero padding (hollow)"} <= set(labels)
    assert len(os16.get_legend().legend_handles) == len(labels)


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
    ax = fig.axes[0]  # and the colourbar
    (box,) = patches(ax, "theoretical")
    assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == (2.5, 2.5, 3, 3)
    (mass,) = patches(ax, "mass")
    assert mass.get_width() == 3  # the whole uniform 3x3 ERF is needed for 95%
    assert "theoretical RF 3x3" in ax.get_title()


def test_erf_beside_the_images_on_one_scale_with_a_colourbar(tmp_path):
    img = viz.load_sample_image(33)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255
    erfs = {name: rfm.effective_receptive_field(rfm.seeded_stack(name), x) for name in ("plain", "aspp")}
    fig = viz.plot_erf(erfs, image=np.stack([img, img[::-1]]), path=tmp_path / "erf.png")
    assert is_png(tmp_path / "erf.png")
    inputs, plain, aspp = fig.axes[:3]
    # the images in their own grey panel (2 side by side), never under the heat
    (shown,) = inputs.images
    assert shown.get_array().shape == (33, 33 * 2 + 2) and "2 inputs" in inputs.get_title()
    assert len(plain.images) == 1 and len(aspp.images) == 1
    # one colour scale: the largest pixel of all panels is 1
    peaks = [float(ax.images[0].get_array().max()) for ax in (plain, aspp)]
    assert max(peaks) == pytest.approx(1.0) and min(peaks) < 1.0
    assert plain.images[0].norm is aspp.images[0].norm
    (bar,) = [ax for ax in fig.axes if ax.get_gid() == "colorbar"]
    assert "1 = largest" in bar.get_ylabel()
    assert len(patches(plain, "theoretical")) == 1
    # ASPP's image pooling resamples: no theory, only the clipped box (the whole image), drawn inside a
    # margin so it does not sit on the frame
    assert not patches(aspp, "theoretical") and len(patches(aspp, "clipped")) == 1
    assert "no theory" in aspp.get_title()
    assert aspp.get_xlim()[0] < -0.5 and aspp.get_xlim()[1] > 32.5
    # every box style has a legend entry with a visible line
    (legend,) = fig.legends
    assert {t.get_text() for t in legend.get_texts()} == {
        "theoretical RF", "RF clipped to the image", "square with 95% of |gradient|"}
    assert all(h.get_linewidth() > 0 for h in legend.legend_handles)


@pytest.mark.parametrize("name", sorted(rfm.TEACHING_STACKS))
def test_every_teaching_stack_has_an_erf_of_at_least_3x3(name):
    (erf,) = viz.teaching_erfs((name,), input_size=41, samples=8).values()
    assert erf.heatmap.sum() == pytest.approx(1.0)
    assert erf.side_for_mass(0.95) >= 3


def test_teaching_erfs_are_reproducible():
    a = viz.teaching_erfs(("strided",), input_size=33, samples=4)["strided"].heatmap
    torch.manual_seed(123)  # the global state does not matter
    b = viz.teaching_erfs(("strided",), input_size=33, samples=4)["strided"].heatmap
    np.testing.assert_array_equal(a, b)


def test_measured_rf_picture_compares_with_the_analysis(tmp_path):
    model = rfm.gridding_stack()
    measured = rfm.measure_receptive_field(model, 21)
    fig = viz.plot_measured_rf(measured, rfm.receptive_field(model, 21), path=tmp_path / "m.png")
    assert is_png(tmp_path / "m.png")
    ax = fig.axes[0]
    assert "measured RF 13x13" in ax.get_title() and "agrees" in ax.get_title()
    assert len(patches(ax, "clipped")) == 1 and len(patches(ax, "theoretical")) == 1
    # no influence (grey, masked) and padding (hatched) look different, and the legend says which is which
    (image,) = ax.images
    assert tuple(image.cmap.get_bad()[:3]) != (1.0, 1.0, 1.0)
    assert patches(ax, "padding")[0].get_hatch() == "//"
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"image pixel with no influence", "zero padding (outside the image)"} <= labels
    assert any(a.get_gid() == "colorbar" for a in fig.axes)
