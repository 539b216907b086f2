"""Paired statistics: the sign test counted by hand, the t tail against printed t-table values."""

import math

import pytest

from atrous.experiment.stats import paired, sign_test, summary, t_sf


def test_sign_test_by_hand():
    assert sign_test([1, 2, 3, 4, 5]) == 1 / 32  # all five positive: (1/2)^5
    assert sign_test([1, 2, 3, 4, -5]) == 6 / 32  # P(>= 4 of 5) = (5 + 1) / 32
    assert sign_test([1, 0, 2]) == 1 / 4  # the tie is dropped: 2 of 2
    assert sign_test([]) == 1.0 and sign_test([-1, -2]) == 1.0


@pytest.mark.parametrize("t, df, p", [(12.706, 1, 0.025), (4.303, 2, 0.025), (2.776, 4, 0.025),
                                      (2.132, 4, 0.05), (2.571, 5, 0.025), (3.365, 5, 0.01),
                                      (1.833, 9, 0.05), (2.228, 10, 0.025)])
def test_t_tail_matches_the_t_table(t, df, p):
    assert t_sf(t, df) == pytest.approx(p, abs=2e-4)
    assert t_sf(-t, df) == pytest.approx(1 - p, abs=2e-4)
    assert t_sf(0.0, df) == pytest.approx(0.5)


def test_paired_by_hand():
    p = paired([1, 2, 3, 4, 5], [2, 3, 5, 4.5, 7])
    d = [1.0, 1.0, 2.0, 0.5, 2.0]
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    assert p.differences == tuple(d) and p.mean == pytest.approx(1.3)
    assert p.t == pytest.approx(mean / (sd / math.sqrt(5))) and p.sign_p == 1 / 32
    assert 0 < p.t_p < 0.01
    assert paired([1, 2], [2, 3]).t == math.inf and paired([1, 2], [2, 3]).t_p == 0.0
    with pytest.raises(ValueError, match="one length"):
        paired([1], [1, 2])
    assert summary([0.5, float("nan"), 1.5]) == {"mean": 1.0, "min": 0.5, "max": 1.5, "n": 2}
