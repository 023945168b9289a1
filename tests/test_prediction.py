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
