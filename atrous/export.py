"""Export a segmentation model: ONNX (through F.conv2d) checked with onnxruntime, or a torch.export program.

* ONNX has no atrous operators, so :func:`export_onnx` exports a copy of the model with
  ``impl="torch"`` (the same weights through ``F.conv2d``, which ONNX's ``Conv`` expresses, dilation
  included), then runs the file with onnxruntime (if installed) and compares it with the model on a
  random input.
* :func:`export_program` keeps ``torch.ops.atrous.*`` in the graph (``torch.export``), saves the
  ``.pt2`` file, reloads it and compares. Loading it elsewhere needs ``import atrous.ops`` first, which
  registers the operators.

Both export the main output (the logits ``(N, K, H, W)``); an auxiliary head, a training aid, is left
out.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from .nn import set_impl

__all__ = ["MainOutput", "export_onnx", "export_program"]

ATROUS_TARGETS = ("atrous.depthwise_conv2d", "atrous.pointwise_conv2d", "atrous.atrous_conv2d",
                  "atrous.separable_conv2d")


class MainOutput(nn.Module):
    """``model``'s logits alone: ``out`` of a model that returns ``{"out", "aux"}``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y["out"] if isinstance(y, dict) else y


def _difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def export_onnx(model: nn.Module, path: str | os.PathLike, example: torch.Tensor, *,
                check: bool = True) -> dict:
    """Write ``model`` (eval mode, ``impl="torch"`` on a copy) as ONNX to ``path`` for inputs shaped
    like ``example``. With ``check`` and onnxruntime installed, run the file on ``example`` and compare
    with ``model`` itself (its own ``impl``). Returns ``{"path", "impl_switched", "onnxruntime",
    "max_abs_difference"}`` (the last two None when not checked)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    exported = MainOutput(set_impl(copy.deepcopy(model), "torch")).eval()
    torch.onnx.export(exported, (example,), str(path), dynamo=True, verbose=False, input_names=["image"],
                      output_names=["logits"])
    result = {"path": str(path), "impl_switched": True, "onnxruntime": None, "max_abs_difference": None}
    if not check:
        return result
    try:
        import onnxruntime  # optional: the export itself does not need it
    except ImportError:
        return result
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: example.detach().cpu().numpy()})
    with torch.no_grad():
        expected = MainOutput(model)(example).cpu()
    result.update(onnxruntime=onnxruntime.__version__,
                  max_abs_difference=_difference(torch.from_numpy(got), expected))
    return result


def export_program(model: nn.Module, path: str | os.PathLike, example: torch.Tensor) -> dict:
    """``torch.export`` ``model`` (eval mode) with the atrous operators kept, save it to ``path`` (.pt2),
    reload it and compare with ``model`` on ``example``. Returns ``{"path", "atrous_ops",
    "max_abs_difference"}``: the atrous operators in the graph, and the reloaded program's difference."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = MainOutput(model.eval()).eval()
    program = torch.export.export(wrapped, (example,))
    torch.export.save(program, str(path))
    reloaded = torch.export.load(str(path))
    targets = sorted({str(node.target).rsplit(".", 1)[0] for node in reloaded.graph.nodes
                      if node.op == "call_function" and str(node.target).startswith("atrous.")})
    with torch.no_grad():
        diff = _difference(reloaded.module()(example), wrapped(example))
    return {"path": str(path), "atrous_ops": targets, "max_abs_difference": diff}
