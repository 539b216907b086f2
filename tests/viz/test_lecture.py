"""The lecture figures (atrous.viz.lecture, atrous.viz.diagrams): each asserts what its picture claims."""

import matplotlib
import numpy as np
import pytest
import torch

from atrous import viz
from atrous.models import get_model

matplotlib.use("Agg")
pytestmark = pytest.mark.filterwarnings("ignore:ASPP")  # small inputs: rates beyond the feature map


def small(output_stride=16, **kw):
    torch.manual_seed(0)
    return get_model("deeplabv3plus_small", num_classes=4, output_stride=output_stride, **kw)


def test_rates_on_photo_keep_nine_taps_and_grow_the_span(tmp_path):
    fig = viz.plot_rates_on_photo(rates=(1, 2, 4), path=tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0
    for ax, d in zip(fig.axes, (1, 2, 4)):
        (taps,) = [c for c in ax.collections if c.get_gid() == "taps"]
        xy = taps.get_offsets()
        assert len(xy) == 9 and sorted(set(xy[:, 0]) - {16}) == [16 - d, 16 + d]
        (span,) = [p for p in ax.patches if p.get_gid() == "span"]
        assert span.get_width() == 2 * d + 1
        assert ax.images[0].get_array().shape == (33, 33, 3)  # the same real patch in every panel


def test_rf_tower_counts_holes_only_for_equal_rates():
    reach = viz.tower_reach([(3, 1, 2)] * 3)[0]
    assert sorted(reach) == list(range(-6, 7, 2))  # only even offsets: 6 holes in a 13-pixel RF
    assert reach[0] == 7  # paths to the centre: (1,1,1) sums of {-1,0,1}... 7 of the 27 end at 0
    full = viz.tower_reach([(3, 1, 1), (3, 1, 2), (3, 1, 4)])[0]
    assert sorted(full) == list(range(-7, 8))
    fig = viz.plot_rf_tower()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["plain\nRF 7 px, no holes", "strided\nRF 11 px, no holes",
                      "atrous (1, 2, 4)\nRF 15 px, no holes", "equal rates (2, 2, 2)\nRF 13 px, 6 holes"]
    (legend,) = fig.legends
    assert len(legend.get_texts()) == 3


def test_separable_conv_equals_the_chained_convolutions():
    fig = viz.plot_separable_conv(rate=2, channels=3, out_channels=2, size=16)
    assert fig.check < 1e-5
    assert "33 weights" in fig._suptitle.get_text() and "54" in fig._suptitle.get_text()


def test_gridding_checkerboard_in_actual_outputs():
    fig = viz.plot_gridding_outputs(size=21)
    equal, hybrid = fig.zero_share.values()
    assert equal == pytest.approx(1 - 49 / 169) and hybrid == 0
    assert any(ax.get_gid() == "colorbar" for ax in fig.axes)


def test_output_strides_show_the_feature_grid_of_each_model(tmp_path):
    models = {f"OS {o}": small(o) for o in (32, 16, 8)}
    fig = viz.plot_output_strides(models, size=65, path=tmp_path / "os.png")
    assert fig.feature_sizes == {"OS 32": (3, 3), "OS 16": (5, 5), "OS 8": (9, 9)}
    assert (tmp_path / "os.png").stat().st_size > 0


def test_decoder_boundaries_count_boundary_pixels():
    img = viz.load_sample_image(48)
    truth = np.zeros((48, 48), np.int64)
    truth[10:30, 10:30] = 1
    fig = viz.plot_decoder_boundaries({"v3+": small()}, img, truth)
    # a pixel is on the boundary where it differs from its left or upper neighbour: columns 10 and 30
    # (20 each), rows 10 and 30 (20 each), pixel (10, 10) counted once
    assert fig.boundary_pixels["truth"] == 20 + 20 + 20 + 20 - 1
    assert len(fig.axes) == 2


def test_diagrams_label_arrows_with_the_shapes_the_model_produced(tmp_path):
    model = small()
    fig = viz.plot_aspp_diagram(model, 65, path=tmp_path / "aspp.png")
    shapes = fig.shapes
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts if t.get_gid() == "arrow"]
    assert "128 x 5 x 5" in labels and labels.count("64 x 5 x 5") == 6  # 5 branches + projection
    assert "320 x 5 x 5" in labels  # concatenation of the five 64-channel branches
    assert shapes["aspp"] == (64, 5, 5)
    fig = viz.plot_deeplab_diagram(model, 65)
    labels = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "arrow"]
    assert "3 x 65 x 65" in labels and "4 x 65 x 65" in labels and "low-level: 24 x 17 x 17" in labels
    # the shapes come from the model: another input size, other labels
    other = viz.plot_deeplab_diagram(model, 97)
    assert "4 x 97 x 97" in [t.get_text() for t in other.axes[0].texts]
    with pytest.raises(ValueError, match="names"):
        viz.tensor_shapes(model, torch.zeros(1, 3, 33, 33), ["nope"])


def test_context_shapes_grid_has_discrete_size_colours_with_a_legend(tmp_path):
    from atrous.data import ContextShapes
    from atrous.data.palettes import CONTEXT_SHAPES_PALETTE
    from atrous.viz.samples import SIZE_COLOURS

    fig = viz.plot_context_shapes(ContextShapes(3, 48, seed=0), 2, path=tmp_path / "s.png")
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["class: red", "class: green", "class: blue",
                      "size: small", "size: medium", "size: large"]
    size_axes = [ax for ax in fig.axes if ax.images and ax.images[0].get_gid() == "size"]
    assert len(size_axes) == 2 and size_axes[0].images[0].cmap.N == 3  # three colours, not a gradient
    class_rgb = {tuple(c) for c in CONTEXT_SHAPES_PALETTE[1:].tolist()}
    size_rgb = {tuple(int(v, 16) for v in (c[1:3], c[3:5], c[5:7])) for c in SIZE_COLOURS}
    assert not class_rgb & size_rgb
