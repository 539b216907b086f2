"""Checkpoints that rebuild their model: weights, optimiser, step, config, the dataset's names and colours."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..models import get_model, undilate
from ..nn import set_impl

__all__ = ["ModelSpec", "build_model", "load_checkpoint", "load_model", "save_checkpoint"]

CHECKPOINT_VERSION = 1


@dataclass
class ModelSpec:
    """What :func:`build_model` needs to rebuild a network: factory name in ``atrous.models.MODELS``,
    classes, output stride, whether atrous rates are kept, and extra factory keyword arguments."""

    name: str
    num_classes: int
    output_stride: int = 16
    dilated: bool = True
    kwargs: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"name": self.name, "num_classes": self.num_classes, "output_stride": self.output_stride,
                "dilated": self.dilated, "kwargs": dict(self.kwargs)}


def build_model(spec: ModelSpec | dict, impl: str | None = None) -> nn.Module:
    """The model a :class:`ModelSpec` describes (:func:`atrous.models.get_model`), freshly initialised
    (load weights afterwards)."""
    if isinstance(spec, dict):
        spec = ModelSpec(**spec)
    model = get_model(spec.name, num_classes=spec.num_classes, output_stride=spec.output_stride,
                      **spec.kwargs)
    if not spec.dilated:
        undilate(model)
    if impl is not None:
        set_impl(model, impl)
    return model


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def _plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    # GlooSyncBatchNorm2d / SyncBatchNorm share BatchNorm2d's keys, and the DDP wrapper is removed, so
    # the checkpoint loads into a plain model on any number of processes.
    return {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, spec: ModelSpec, optimizer=None,
                    scaler=None, step: int = 0, config: dict | None = None, dataset: dict | None = None,
                    history: list | None = None, losses: list | None = None,
                    metrics: dict | None = None, backbone_weights: dict | None = None) -> Path:
    """Write a checkpoint atomically (a temporary file renamed over ``path``); returns the path.

    ``dataset`` carries what inference needs: ``classes``, ``palette`` (list of RGB), ``mean``, ``std``.
    ``backbone_weights``: where the initial backbone weights came from (plain data; None: random).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "version": CHECKPOINT_VERSION,
        "model": _plain_state_dict(model),
        "model_spec": spec.as_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "step": int(step),
        "config": dict(config or {}),
        "dataset": dict(dataset or {}),
        "history": list(history or []),
        "losses": list(losses or []),
        "metrics": dict(metrics or {}),
        "backbone_weights": dict(backbone_weights) if backbone_weights else None,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint behind
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict (tensors on the CPU). Raises naming the file if it is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_checkpoint: no checkpoint file at {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # pickle, zip and torch errors alike: say which file and what was expected
        raise ValueError(f"load_checkpoint: {str(path)!r} is not a readable torch checkpoint: {e}") from e
    if not isinstance(state, dict) or "model" not in state or "model_spec" not in state:
        got = f"keys {sorted(state)[:8]}" if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"load_checkpoint: expected a checkpoint written by atrous train (keys 'model', "
                         f"'model_spec'), got {str(path)!r} with {got}")
    return state


def load_model(path: str | os.PathLike, impl: str | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint with its trained weights, in eval mode: ``(model, checkpoint)``."""
    state = load_checkpoint(path)
    model = build_model(state["model_spec"], impl)
    model.load_state_dict(state["model"])
    return model.eval(), state
