"""The transfer design's verdicts and scores by hand (end to end: tests/cli/test_experiment.py)."""

import pytest
import torch

from atrous.experiment.transfer import EVALUATIONS, score_model, transfer_verdicts


def _runs(base, dilated, undilated, boundary_gain):
    def rows(values, b):
        return [{"miou": v / 100, "boundary": (50 + b) / 100} for v in values]

    return {EVALUATIONS[0]: rows(base, 0), EVALUATIONS[1]: rows(dilated, boundary_gain),
            EVALUATIONS[2]: rows(undilated, 0)}


def test_verdicts_follow_the_numbers():
    v = {p["key"]: p for p in transfer_verdicts(_runs([50, 60, 70], [50.5, 59.8, 70.2], [30, 45, 55], 2))}
    assert v["T1"]["verdict"] == "held" and v["T2"]["verdict"] == "held" and v["T3"]["verdict"] == "held"
    assert v["T3"]["differences"] == pytest.approx([-20, -15, -15])
    assert v["T3"]["sign_p"] == 1 / 8 and v["T3"]["t_p"] < 0.01  # one-sided for a fall
    v = {p["key"]: p for p in transfer_verdicts(_runs([50, 60, 70], [45, 58, 69], [45, 58, 69], -1))}
    assert [v[k]["verdict"] for k in ("T1", "T2", "T3")] == ["failed", "failed", "failed"]


class Constant(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        out = torch.zeros(x.shape[0], 2, *x.shape[-2:]) + self.w
        out[:, self.c] = 1
        return out


def test_boundary_and_interior_accuracy_by_hand():
    mask = torch.zeros(16, 16, dtype=torch.long)
    mask[4:12, 4:12] = 1
    data = [{"image": torch.zeros(3, 16, 16), "mask": mask}]
    scores = score_model(Constant(0), data, 2)
    # Band (within 2 px of an edge pixel): the 14x14 box around the square but its 4 corners, less
    # the square's 2x2 centre: 60 object + 128 background pixels. Predicting background everywhere:
    assert scores["boundary"] == pytest.approx(128 / 188)
    assert scores["interior"] == pytest.approx(64 / 68)  # 64 far background right, the 4 centre pixels wrong
    assert scores["pixel_accuracy"] == pytest.approx(192 / 256)
