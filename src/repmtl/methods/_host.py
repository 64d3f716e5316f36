"""Moving the small ``T×T`` problems of gradient methods to the host and back.

A Gramian-based method pays one device→host copy of ``K`` (``T²`` numbers) per step, solves
in float64 with numpy, and returns ``α`` to the Gramian's device and dtype.
"""

from __future__ import annotations

import numpy as np
import torch


def to_host(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()


def to_device(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float64)).to(device=like.device, dtype=like.dtype)
