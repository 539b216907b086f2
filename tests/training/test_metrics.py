"""atrous.metrics: confusion matrices and IoUs checked against matrices computed by hand."""

import math

import pytest
import torch

from atrous.metrics import ConfusionMatrix, confusion_matrix, scores_from_confusion

# Six pixels, one ignored. (true, predicted) pairs: (0,0) (1,1) (2,1) (2,2) (1,0); (255, 0) is ignored.
PRED = torch.tensor([[0, 1, 1], [2, 0, 0]])
TRUE = torch.tensor([[0, 1, 2], [2, 255, 1]])
# rows: true class, columns: predicted class
HAND = torch.tensor([[1, 0, 0],
                     [1, 1, 0],
                     [0, 1, 1]])


def test_confusion_matrix_by_hand():
    assert torch.equal(confusion_matrix(PRED, TRUE, 3), HAND)


def test_scores_by_hand():
    s = scores_from_confusion(HAND)
    # IoU_c = TP / (row sum + column sum - TP)
    # class 0: 1 / (1 + 2 - 1) = 1/2; class 1: 1 / (2 + 2 - 1) = 1/3; class 2: 1 / (2 + 1 - 1) = 1/2
    assert s.iou == pytest.approx([1 / 2, 1 / 3, 1 / 2])
    assert s.miou == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)  # 0.4444
    assert s.pixel_accuracy == pytest.approx(3 / 5)
    assert s.accuracy == pytest.approx([1, 1 / 2, 1 / 2])  # TP / row sum
    assert s.mean_accuracy == pytest.approx(2 / 3)
    assert s.pixels == 5


def test_absent_class_is_nan_and_left_out_but_false_positives_count():
    # With a 4th class that is neither labelled nor predicted, the IoUs and mean do not change.
    s = ConfusionMatrix(4).update(PRED, TRUE).scores()
    assert math.isnan(s.iou[3]) and math.isnan(s.accuracy[3])
    assert s.miou == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    # Predicting class 3 where the truth is 0 gives class 3 an IoU of 0 (not NaN) and lowers class 0.
    pred = PRED.clone()
    pred[0, 0] = 3
    s = ConfusionMatrix(4).update(pred, TRUE).scores()
    assert s.iou[3] == 0.0
    assert s.iou[0] == 0.0  # class 0's only pixel is now wrong: 0 / (1 + 1 - 0)
    assert s.miou == pytest.approx((0 + 1 / 3 + 1 / 2 + 0) / 4)


def test_accumulation_over_batches_equals_one_matrix_and_mask_restricts():
    torch.manual_seed(0)
    pred = torch.randint(0, 5, (4, 7, 9))
    true = torch.randint(0, 5, (4, 7, 9))
    true[0, :2] = 255
    cm = ConfusionMatrix(5)
    for p, t in zip(pred, true):
        cm.update(p, t)
    assert torch.equal(cm.matrix, confusion_matrix(pred, true, 5))
    assert cm.matrix.sum() == 4 * 7 * 9 - 2 * 9
    region = torch.zeros_like(true, dtype=torch.bool)
    region[:, 3] = True
    only = confusion_matrix(pred, true, 5, mask=region)
    assert torch.equal(only, confusion_matrix(pred[:, 3], true[:, 3], 5))


def test_scores_restricted_to_classes():
    s = scores_from_confusion(HAND, classes=[1, 2])
    assert s.miou == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert s.iou == pytest.approx([1 / 2, 1 / 3, 1 / 2])  # per-class lists stay complete


def test_table_lists_classes_and_means():
    text = scores_from_confusion(HAND).table(["bg", "cat", "dog"])
    lines = text.splitlines()
    assert lines[1].split() == ["bg", "50.0", "100.0"]
    assert lines[2].split() == ["cat", "33.3", "50.0"]
    assert lines[4].split() == ["mean", "44.4", "66.7"]
    assert "pixel accuracy 60.0 over 5 pixels" in text


@pytest.mark.parametrize("pred,true,match", [
    (torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), "same shape"),
    (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), "integer class ids"),
    (torch.full((2, 2), 3), torch.zeros(2, 2, dtype=torch.long), r"pred values in \[0, 3\), got 3"),
    (torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 7), r"target values in \[0, 3\) or 255, got 7"),
])
def test_errors_name_the_problem(pred, true, match):
    with pytest.raises((ValueError, TypeError), match=match):
        confusion_matrix(pred, true, 3)


def test_num_classes_checked():
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)
