"""The reach design: the variants' geometry (RF by the tracer, HDC, sizes), the data, the scores by hand."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from atrous.experiment.reach import QUICK, run_reach
from atrous.experiment.reach_data import RIM, RIM_COLOURS, ReachShapes, render_reach
from atrous.experiment.reach_model import REACH_VARIANTS, ReachNet
from atrous.experiment.scoring import boundary_band, depth_bins, label_flips
from atrous.receptive_field import receptive_field
from atrous.receptive_field.arithmetic import hdc_max_distance, reachable_offsets


def test_variants_geometry():
    by_key = {v.key: v for v in REACH_VARIANTS}
    geometry = [(v.rf, v.reach, v.output_stride) for v in REACH_VARIANTS]
    assert geometry == [(19, 9, 2), (71, 35, 2), (51, 25, 2), (47, 23, 8)]
    for v in REACH_VARIANTS:  # the closed form agrees with the tracer on the built network
        rf = receptive_field(torch.nn.Sequential(ReachNet(v).stem, ReachNet(v).convs), (64, 64)).output.rf[0]
        assert (rf.size, rf.jump) == (v.rf, v.output_stride)
    sizes = {sum(p.numel() for p in ReachNet(v).parameters()) for v in REACH_VARIANTS}
    assert len(sizes) == 1
    # B meets HDC and reaches every offset; C reaches only multiples of 3 (gridding).
    b, c = by_key["B"].rates, by_key["C"].rates
    assert hdc_max_distance(b) <= 3 and reachable_offsets(b) == set(range(-17, 18))
    assert reachable_offsets(c) == set(range(-12, 13, 3))
    assert hdc_max_distance((1, 2, 9)) == 5 > 3  # Wang et al.'s failing example


def test_reach_shapes_label_is_on_the_rim():
    s = render_reach(np.random.default_rng(3), 64)
    obj = s["mask"] > 0
    assert obj.any() and (s["depth"][~obj] == 0).all() and (s["depth"][obj] > 0).all()
    assert s["depth"].max() <= 20.5
    rim = obj & (s["depth"] <= RIM)
    colours = np.round(s["image"].transpose(1, 2, 0)[rim] * 255)
    expected = RIM_COLOURS[s["mask"][rim] - 1]
    assert np.abs(colours - expected).max() <= 0.5  # the rim's colour is the label
    ds = ReachShapes(6, 64, seed=1)
    assert ds.images.shape == (6, 3, 64, 64) and ds.masks.dtype == torch.int64 and len(ds) == 6
    assert torch.equal(ReachShapes(6, 64, seed=1).images, ds.images)  # reproducible


def test_scores_by_hand():
    masks = torch.zeros(1, 8, 8, dtype=torch.long)
    masks[0, 2:6, 2:6] = 1
    # Edge pixels: the square's own ring (12) and the 16 outside pixels 4-adjacent to it.
    edge = boundary_band(masks, width=0)[0]
    assert edge.sum() == 28 and edge[1, 2] and edge[2, 2] and not edge[1, 1] and not edge[3, 3]
    band = boundary_band(masks, width=1)[0]  # dilated by one pixel: all but the four corners
    assert band.sum() == 60 and not band[0, 0] and band[0, 1] and band[3, 3]
    pred = masks.clone()
    assert label_flips(pred, masks) == 0.0
    pred[0, 3, 3] = 2  # one pixel inside: 4 of the 24 inner pairs differ
    assert label_flips(pred, masks) == pytest.approx(100 * 4 / 24)
    depths = torch.zeros(1, 8, 8)
    depths[0, 2:6, 2:6] = 1.5
    depths[0, 3:5, 3:5] = 2.5
    right, total = depth_bins(pred, masks, depths, 3)
    assert total == [0, 12, 4, 0] and right == [0, 12, 3, 0]


def test_parallel_workers_give_the_same_results(tmp_path):
    """A seed fixes the initialisation and the batches: spawned workers reproduce one process exactly,
    also after autograd has run in this process (a forked worker could not run autograd then)."""
    torch.ones(1, requires_grad=True).sum().backward()  # autograd's threads have started
    cfg = replace(QUICK, steps=2, train_size=8, val_size=4)
    one = run_reach(cfg, out=tmp_path / "one", progress=False)
    two = run_reach(replace(cfg, workers=2), out=tmp_path / "two", progress=False)
    for key in "ABCD":
        for a, b in zip(one["runs"][key], two["runs"][key]):
            a.pop("seconds")
            b.pop("seconds")
            assert a == b, (key, a, b)
