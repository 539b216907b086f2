"""The effective receptive field (Luo et al., NeurIPS 2016): where the gradient of one output actually
concentrates, as a normalised heatmap."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .inputs import _eval_mode, _float_dtype_device, _input_size, _select_output, _size, infer_in_channels
from .report import Box, UnsupportedModelError
from .tracer import receptive_field

__all__ = ["ERF_OBJECTIVES", "EffectiveRF", "EmptyERFWarning", "effective_receptive_field"]

ERF_OBJECTIVES = ("log_prob", "sum")


class EmptyERFWarning(UserWarning):
    """The ERF map is all zero: no gradient reached the input (dead ReLUs, or an output that ignores it)."""


@dataclass
class EffectiveRF:
    """Gradient-magnitude map ``|d output[:, :, y, x] / d input|`` summed over channels, averaged over
    the inputs and normalised to sum 1. ``centre`` (input coordinates) is where the squares are centred:
    the theoretical RF centre of the output when the model is analysable (``centre_source`` says which)."""

    heatmap: np.ndarray
    position: tuple[int, int]
    centre: tuple[float, float]
    centre_source: str
    theoretical_box: Box | None
    clipped_box: Box | None
    samples: int

    def mass_in_squares(self, sides: Iterable[int]) -> dict[int, float]:
        """Share of the map's mass inside centred squares: side ``s`` covers the pixels within
        ``(s - 1) / 2`` of ``centre`` along both axes."""
        H, W = self.heatmap.shape
        ys, xs = np.arange(H)[:, None], np.arange(W)[None, :]
        cy, cx = self.centre
        out = {}
        for s in sides:
            if s < 1:
                raise ValueError(f"square sides must be >= 1, got {s}")
            half = (s - 1) / 2 + 1e-9
            inside = (np.abs(ys - cy) <= half) & (np.abs(xs - cx) <= half)
            out[int(s)] = float(self.heatmap[inside].sum())
        return out

    def side_for_mass(self, fraction: float = 0.95) -> int:
        """Smallest centred square side holding at least ``fraction`` of the mass."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        H, W = self.heatmap.shape
        cy, cx = self.centre
        # the square of side s covers pixels with Chebyshev distance <= (s - 1) / 2 from the centre
        ys, xs = np.arange(H)[:, None], np.arange(W)[None, :]
        cheb = np.maximum(np.abs(ys - cy), np.abs(xs - cx)).ravel()
        order = np.argsort(cheb, kind="stable")
        cum = np.cumsum(self.heatmap.ravel()[order])
        k = int(np.searchsorted(cum, fraction * cum[-1] - 1e-12))
        return math.floor(2 * cheb[order][min(k, len(order) - 1)] + 1 + 1e-9)


def effective_receptive_field(
    model: nn.Module,
    inputs: torch.Tensor | None = None,
    *,
    input_size: int | tuple[int, int] | None = None,
    position: tuple[int, int] | None = None,
    samples: int = 8,
    seed: int = 0,
    in_channels: int | None = None,
    output: str | int | Callable[[Any], torch.Tensor] | None = None,
    batch_size: int = 4,
    objective: str = "log_prob",
) -> EffectiveRF:
    """The effective receptive field (Luo et al., NeurIPS 2016) of one output position.

    ``inputs`` is an image ``(C, H, W)`` or a batch ``(N, C, H, W)``; without it, ``samples`` standard
    normal images of ``input_size`` are drawn (the paper's setting). The model's own weights are used,
    trained or not, in eval mode (its training flags are restored and nothing is modified). The map is
    ``mean_n sum_c |d f(output[n, :, y, x]) / d input[n, c]|``, normalised to sum 1, where ``objective``
    chooses ``f``:

    * ``"log_prob"`` (default): the log-probability of the class predicted at ``(y, x)``, i.e. minus the
      pixel's cross-entropy loss were that class its label: what training pushes on. With one output
      channel there is no softmax and the output itself is used.
    * ``"sum"``: the sum of the class scores (the old behaviour). It measures the scores, not the
      decision: softmax is shift-invariant (adding the same value to every score changes no
      probability), so the part of the gradient that moves all scores together, which this sum
      keeps, is exactly the part the prediction ignores.

    An all-zero map (no gradient reached the input) emits :class:`EmptyERFWarning`.
    """
    if objective not in ERF_OBJECTIVES:
        raise ValueError(f"objective must be one of {ERF_OBJECTIVES}, got {objective!r}")
    if inputs is None:
        if input_size is None:
            raise ValueError("give inputs or input_size")
        H, W = _input_size(input_size)
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        C = in_channels or infer_in_channels(model)
        dtype, device = _float_dtype_device(model)
        gen = torch.Generator().manual_seed(seed)
        inputs = torch.randn(samples, C, H, W, generator=gen, dtype=dtype).to(device)
    else:
        if not isinstance(inputs, torch.Tensor) or inputs.dim() not in (3, 4):
            shape = getattr(inputs, "shape", type(inputs))
            raise ValueError(f"inputs must be a (C, H, W) or (N, C, H, W) tensor, got {shape}")
        inputs = inputs[None] if inputs.dim() == 3 else inputs
        dtype, device = _float_dtype_device(model)
        inputs = inputs.to(dtype=dtype, device=device)
    H, W = _size(inputs)
    heat = torch.zeros(H, W, dtype=torch.float64)
    pos = position
    with _eval_mode(model):
        for chunk in inputs.split(batch_size):
            x = chunk.detach().clone().requires_grad_(True)
            y = _select_output(model(x), output)
            if y.dim() != 4:
                raise UnsupportedModelError(f"the output is {y.dim()}-D; the ERF needs (N, C, H, W)")
            if pos is None:
                pos = ((y.shape[-2] - 1) // 2, (y.shape[-1] - 1) // 2)
            scores = y[:, :, pos[0], pos[1]]  # (N, K)
            if objective == "log_prob" and scores.shape[1] > 1:
                logp = torch.log_softmax(scores, dim=1)
                target = logp.gather(1, logp.detach().argmax(1, keepdim=True)).sum()
            else:
                target = scores.sum()
            (g,) = torch.autograd.grad(target, x)
            heat += g.detach().abs().sum(1).sum(0).to("cpu", torch.float64)
    heat = heat.numpy()
    total = heat.sum()
    if total == 0:
        warnings.warn(f"the effective receptive field of output {pos} is all zero: no gradient reached the "
                      "input (dead ReLUs? try more channels, more samples or another seed)", EmptyERFWarning,
                      stacklevel=2)
    heat = heat / total if total > 0 else heat

    theoretical = clipped = None
    try:
        report = receptive_field(model, (H, W), in_channels=inputs.shape[1], output=output)
        row = report.output
        clipped = row.box_clipped(*pos)
        if row.rf is not None:
            theoretical = row.box(*pos)
            centre, source = (row.rf[0].centre(pos[0]), row.rf[1].centre(pos[1])), "theory"
        elif clipped is not None:
            centre, source = ((clipped[0] + clipped[2]) / 2, (clipped[1] + clipped[3]) / 2), "clipped box"
        else:
            raise UnsupportedModelError("empty support")
    except UnsupportedModelError:
        ys, xs = np.mgrid[:H, :W]
        if total > 0:
            centre = (float((heat * ys).sum()), float((heat * xs).sum()))
        else:
            centre = ((H - 1) / 2, (W - 1) / 2)
        source = "centroid"
    position = (int(pos[0]), int(pos[1]))
    return EffectiveRF(heat, position, centre, source, theoretical, clipped, int(inputs.shape[0]))
