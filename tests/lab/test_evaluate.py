"""Evaluation of exit policies on collected outputs, and SEENN's AET."""

import numpy as np
import pytest

from streamsnn.lab.evaluate import aet, empirical_aet


def test_aet_equals_the_papers_formula_on_a_worked_example():
    # 4 samples, T = 3. Correct at steps: s0 all; s1 from step 2; s2 only at step 1; s3 never.
    correct = np.array([[1, 1, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=bool)
    c = correct.sum(0)  # c_1 = 2, c_2 = 2, c_3 = 2
    by_hand = (c[0] + 2 * (c[1] - c[0]) + 3 * (c[2] - c[1]) + (4 - c[2]) * 3) / 4
    assert by_hand == pytest.approx(2.0)
    assert aet(correct) == pytest.approx(by_hand)
    assert empirical_aet(correct) == pytest.approx((1 + 2 + 1 + 3) / 4)
