"""Program inputs (``mibpcert.ir.inputs``): tensors become float64 numpy arrays on the CPU."""
from __future__ import annotations

import numpy as np
import torch

from mibpcert.ir.inputs import as_array


def test_as_array_is_float64_numpy_and_detached():
    t = torch.tensor([[0.1, -2.0], [3.0, 4.5]], dtype=torch.float32, requires_grad=True)
    a = as_array(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == (2, 2)
    assert np.array_equal(a, t.detach().double().numpy())  # float32 values widen exactly
