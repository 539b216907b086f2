"""Holes of stacked dilated layers: reachable offsets by brute force, and the HDC criterion of Wang et al."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from atrous.receptive_field.arithmetic import hdc_max_distance, reachable_offsets


def _offsets_by_gradient(rates):
    """Offsets of the input pixels that change the centre output of a stack of 1-D 3-tap all-ones
    convolutions, each padded by its rate so the centre stays at index ``reach``."""
    reach = 2 * sum(rates)
    x = torch.zeros(1, 1, 2 * reach + 1, dtype=torch.float64, requires_grad=True)
    y = x
    for r in rates:
        y = F.conv1d(y, torch.ones(1, 1, 3, dtype=torch.float64), padding=r, dilation=r)  # (1, 1, L)
    y[0, 0, reach].backward()
    return {i - reach for i in torch.nonzero(x.grad[0, 0]).flatten().tolist()}


@pytest.mark.parametrize("rates", [(1,), (2,), (2, 3), (1, 2, 8), (1, 2, 5), (2, 4, 8), (1, 3, 9), (3, 1, 2)])
def test_reachable_offsets_are_the_pixels_a_gradient_reaches(rates):
    assert reachable_offsets(rates) == _offsets_by_gradient(rates)


def test_reachable_offsets_by_hand():
    assert reachable_offsets([2, 3]) == {-5, -3, -2, -1, 0, 1, 2, 3, 5}  # 4 is missed
    assert 4 not in reachable_offsets([1, 2, 8]) and 5 in reachable_offsets([1, 2, 8])
    assert reachable_offsets([1, 2, 5]) == set(range(-8, 9))
    assert reachable_offsets([4], kernel_size=1) == {0}
    assert reachable_offsets([2], kernel_size=2) == {0, 2}


def test_hdc_recursion_by_hand():
    assert hdc_max_distance([1, 2, 5]) == max(5 - 4, 5 - 2 * (5 - 2), 2) == 2
    assert hdc_max_distance([1, 2, 8]) == max(8 - 4, 8 - 2 * (8 - 2), 2) == 4
    assert hdc_max_distance([1, 2, 9]) == 5
    assert hdc_max_distance([2, 3]) == 3  # M_2 = r_2: the criterion needs a dense first layer here


def test_hdc_criterion_agrees_with_the_offsets():
    """For non-decreasing rates that start at 1 (the paper's setting): M_2 <= 3 iff the stack has no hole."""
    checked = 0
    for n in (2, 3, 4):
        for tail in itertools.combinations_with_replacement(range(1, 11), n - 1):
            rates = (1, *tail)
            offsets = reachable_offsets(rates)
            no_hole = offsets == set(range(min(offsets), max(offsets) + 1))
            assert (hdc_max_distance(rates) <= 3) == no_hole, rates
            checked += 1
    assert checked == 10 + 55 + 220


@pytest.mark.parametrize("bad", [[], [0, 1], [1.5], [True]])
def test_bad_rates_are_refused(bad):
    with pytest.raises(ValueError, match="rates must be"):
        reachable_offsets(bad)


def test_hdc_only_for_three_taps():
    with pytest.raises(ValueError, match="kernel_size must be 3"):
        hdc_max_distance([1, 2], kernel_size=5)
