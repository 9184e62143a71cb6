"""Small array helpers shared by the generators."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def pick(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``k`` distinct row positions out of ``n`` (none when either is 0)."""
    return rng.choice(n, size=min(k, n), replace=False) if n and k else np.empty(0, np.int64)


def timestamps(seconds: np.ndarray) -> pa.Array:
    """Epoch seconds as naive ``timestamp[us]`` (TLC's wall-clock times)."""
    return pa.array(
        seconds.astype("datetime64[s]").astype("datetime64[us]"), type=pa.timestamp("us")
    )
