"""Tap maps: which parent positions each output position reads, per axis, and the exact bounding boxes
they propagate (the clipped receptive field)."""

from __future__ import annotations

import numpy as np

_BIG = np.int64(1) << 62  # "empty" marker: lo = +BIG, hi = -BIG, so min/max ignore it


def _window_taps(n_out: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    return np.arange(n_out, dtype=np.int64)[:, None] * s - p + np.arange(k, dtype=np.int64)[None, :] * d


def _identity_taps(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)[:, None]


def _broadcast_taps(n_out: int, n_in: int) -> np.ndarray:
    return np.zeros((n_out, 1), np.int64) if n_in == 1 else _identity_taps(n_out)


def _adaptive_taps(n_in: int, n_out: int) -> np.ndarray:
    # PyTorch's adaptive pooling windows: [floor(i n_in / n_out), ceil((i + 1) n_in / n_out)).
    i = np.arange(n_out, dtype=np.int64)
    starts = (i * n_in) // n_out
    ends = ((i + 1) * n_in + n_out - 1) // n_out
    width = int((ends - starts).max())
    taps = starts[:, None] + np.arange(width)[None, :]
    return np.where(taps < ends[:, None], taps, -1)


def _interp_taps(
    n_in: int, n_out: int, mode: str, align_corners: bool | None, scale: float | None
) -> np.ndarray:
    """Taps of F.interpolate along one axis, with PyTorch's own index arithmetic (``scale`` is the
    user's scale_factor when the kernel receives it) so the zero-weight neighbours agree with what a
    float64 gradient sees. -1 marks an absent tap."""
    i = np.arange(n_out, dtype=np.int64)
    if mode in ("nearest", "nearest-exact"):
        if n_out == n_in:
            return _identity_taps(n_out)
        if mode == "nearest" and n_out == 2 * n_in:
            return (i >> 1)[:, None]
        # the CPU kernel computes the scale and the index in float32
        s32 = np.float32(1.0 / scale) if scale else np.float32(n_in) / np.float32(n_out)
        if mode == "nearest":
            src = np.floor(i.astype(np.float32) * s32)
        else:
            src = np.floor(((i + 0.5) * np.float64(s32)).astype(np.float32))
        return np.minimum(src.astype(np.int64), n_in - 1)[:, None]
    assert mode == "bilinear"
    if n_out == n_in:  # the kernel copies
        return _identity_taps(n_out)
    if align_corners:
        ratio = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        src = ratio * i.astype(np.float64)
    else:
        ratio = 1.0 / scale if scale else n_in / n_out
        src = np.maximum(ratio * (i + 0.5) - 0.5, 0.0)
    # PyTorch floors with floorf, i.e. after rounding the float64 index to float32
    i0 = np.minimum(np.floor(src.astype(np.float32)).astype(np.int64), n_in - 1)
    lam = np.clip(src - i0, 0.0, 1.0)
    i1 = i0 + (i0 < n_in - 1)
    return np.stack([np.where(1.0 - lam != 0, i0, -1), np.where(lam != 0, i1, -1)], axis=1)


def _propagate(lo: np.ndarray, hi: np.ndarray, taps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box per output = hull of the boxes of the taps that land inside the parent map."""
    valid = (taps >= 0) & (taps < len(lo))
    safe = np.where(valid, taps, 0)
    return (
        np.where(valid, lo[safe], _BIG).min(axis=1),
        np.where(valid, hi[safe], -_BIG).max(axis=1),
    )

