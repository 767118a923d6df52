"""The metrics function on predictions whose answer is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import EvalPrediction

from components.train.train import classification_metrics, compute_metrics, confusion


def test_known_predictions():
    # class 0: precision 1/2, recall 1 -> F1 2/3; class 1: precision 1, recall 2/3 -> F1 4/5
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["f1_macro"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m["f1_weighted"] == pytest.approx((1 * 2 / 3 + 3 * 4 / 5) / 4)


def test_compute_metrics_takes_argmax_of_logits():
    logits = np.array([[2.0, 0.1, 0.0], [0.0, 3.0, 0.1], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    labels = np.array([0, 1, 2, 2])
    m = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    assert m["accuracy"] == pytest.approx(0.75)
    assert set(m) == {"accuracy", "f1_weighted", "f1_macro"}


def test_perfect_predictions():
    y = np.arange(10)
    assert classification_metrics(y, y) == {"accuracy": 1.0, "f1_weighted": 1.0, "f1_macro": 1.0}


def test_confusion_matrix_rows_are_actual_classes():
    m = confusion(np.array([1, 1, 2]), np.array([0, 1, 2]))
    assert len(m) == 10 and all(len(r) == 10 for r in m)
    assert m[0][1] == 1 and m[1][1] == 1 and m[2][2] == 1
    assert sum(map(sum, m)) == 3
