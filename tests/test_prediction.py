import math

import pytest
import torch

from streamsnn.prediction import softmax


@pytest.mark.parametrize("scale", [1.0, 15.0, 0.25])
def test_softmax_matches_torch_in_float64(scale):
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        values = (torch.randn(10, generator=gen, dtype=torch.float64) * 30).tolist()
        expected = torch.softmax(torch.tensor(values, dtype=torch.float64) / scale, 0).tolist()
        got = softmax(values, scale)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-300)
        assert math.fsum(got) == pytest.approx(1.0, abs=1e-12)


def test_softmax_does_not_overflow_on_large_outputs():
    assert softmax([1e6, 0.0]) == [1.0, 0.0]
    assert softmax([800.0, 800.0]) == [0.5, 0.5]


def test_read_out_divides_by_alpha_or_by_the_step_count():
    """model.alpha: a number divides the accumulated output; ``t`` divides it by the steps so far
    (the running mean). The class is the first index of the largest probability."""
    from streamsnn.prediction import read_out

    output = [6.0, 2.0, 6.0]
    probs, confidence, cls = read_out(output, 3, 2.0)
    assert probs == softmax([3.0, 1.0, 3.0]) and confidence == max(probs) and cls == 0
    assert read_out(output, 4, "t") == read_out(output, 7, 4.0)
    assert read_out([0.0, 8.0], 2, "t")[1] == pytest.approx(1 / (1 + math.exp(-4.0)))
