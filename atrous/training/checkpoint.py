"""Checkpoints that rebuild their model: weights, optimiser, step, config, the dataset's names and colours.

Safe to load from anywhere: a checkpoint holds tensors and plain data (dict, list, tuple, str, int,
float, bool, None) only, and is read with ``torch.load(weights_only=True)``, whose unpickler refuses
any other object, so a file that carries code is rejected before anything in it runs.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models import MODELS, get_model, undilate
from ..nn import set_impl

__all__ = ["CheckpointError", "CheckpointNotFoundError", "ModelSpec", "build_model", "load_checkpoint",
           "load_model", "load_weights", "save_checkpoint"]

CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable atrous checkpoint; the message is one line naming the file."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the checkpoint path."""


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


def _check_spec(spec, where: str) -> dict:
    """``spec`` as a ModelSpec dict, or CheckpointError saying which field is wrong."""
    if not isinstance(spec, dict):
        raise CheckpointError(f"{where}: 'model_spec' must be a dict, got {type(spec).__name__}")
    unknown = sorted(set(spec) - {"name", "num_classes", "output_stride", "dilated", "kwargs"})
    if unknown:
        raise CheckpointError(f"{where}: 'model_spec' has unknown fields {unknown}")
    name, num_classes = spec.get("name"), spec.get("num_classes")
    if not isinstance(name, str) or name not in MODELS:
        raise CheckpointError(f"{where}: 'model_spec' names model {name!r}, "
                              "expected one of atrous.models.MODELS")
    if type(num_classes) is not int or num_classes < 1:
        raise CheckpointError(f"{where}: 'model_spec' num_classes must be a positive int, "
                              f"got {num_classes!r}")
    if spec.get("output_stride", 16) not in (8, 16, 32) or type(spec.get("output_stride", 16)) is not int:
        raise CheckpointError(f"{where}: 'model_spec' output_stride must be 8, 16 or 32, "
                              f"got {spec.get('output_stride')!r}")
    if not isinstance(spec.get("dilated", True), bool):
        raise CheckpointError(f"{where}: 'model_spec' dilated must be a bool, got {spec.get('dilated')!r}")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise CheckpointError(f"{where}: 'model_spec' kwargs must be a dict with str keys, got {kwargs!r}")
    return {"name": name, "num_classes": num_classes, "output_stride": spec.get("output_stride", 16),
            "dilated": spec.get("dilated", True), "kwargs": dict(kwargs)}


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


def _plain(value, where: str):
    """``value`` as tensors and plain Python data (what ``weights_only=True`` loads): numpy arrays and
    scalars become lists and numbers, paths strings; anything else is a TypeError at save time."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {_plain(k, where): _plain(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(v, where) for v in value]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(f"save_checkpoint: {where} holds a {type(value).__name__}; checkpoints store tensors "
                    "and plain data only (dict, list, tuple, str, int, float, bool, None)")


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
        "model_spec": _plain(spec.as_dict(), "model_spec"),
        "optimizer": _plain(optimizer.state_dict(), "optimizer") if optimizer is not None else None,
        "scaler": (_plain(scaler.state_dict(), "scaler")
                   if scaler is not None and scaler.is_enabled() else None),
        "step": int(step),
        "config": _plain(dict(config or {}), "config"),
        "dataset": _plain(dict(dataset or {}), "dataset"),
        "history": _plain(list(history or []), "history"),
        "losses": _plain(list(losses or []), "losses"),
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "backbone_weights": _plain(dict(backbone_weights), "backbone_weights") if backbone_weights else None,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint behind
    return path


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# The optional fields and the types they must have (older checkpoints may lack some).
_FIELDS = {"optimizer": (dict, type(None)), "scaler": (dict, type(None)), "step": int, "config": dict,
           "dataset": dict, "history": list, "losses": list, "metrics": dict}
_DEFAULTS = {"optimizer": None, "scaler": None, "step": 0, "config": {}, "dataset": {}, "history": [],
             "losses": [], "metrics": {}}


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict (tensors on the CPU), read without running any code from the file.

    Raises :class:`CheckpointError` (a ValueError; :class:`CheckpointNotFoundError` also a
    FileNotFoundError) with a one-line message naming the file: missing, truncated, not a torch file,
    carrying Python objects other than tensors and plain data (refused before anything runs), or not
    written by ``atrous train`` (wrong keys, malformed ``model_spec``).
    """
    path = Path(path)
    where = f"load_checkpoint: {str(path)!r}"
    if not path.is_file():
        raise CheckpointNotFoundError(f"load_checkpoint: no checkpoint file at {str(path)!r}")
    try:
        # weights_only=True: torch's restricted unpickler builds tensors and plain containers only and
        # stops at the first other global (os.system, a class, a lambda), before calling anything.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found is None:  # an opcode the safe unpickler does not take: not a torch checkpoint
            raise CheckpointError(f"{where} is not a readable torch checkpoint (truncated or another kind "
                                  "of file); nothing from it was run") from e
        raise CheckpointError(
            f"{where} is refused: it holds Python objects ({found.group(1)}) besides tensors and plain "
            "data, which could run code when loaded; atrous checkpoints never do, and nothing from this "
            "file was run"
        ) from e
    except Exception as e:  # truncated zip, not a torch file, corrupt records (struct, EOF, zip errors...)
        raise CheckpointError(f"{where} is not a readable torch checkpoint (truncated or another kind "
                              f"of file): {_first_line(e)}") from e
    if not isinstance(state, dict) or "model" not in state or "model_spec" not in state:
        got = f"keys {sorted(map(str, state))[:8]}" if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"load_checkpoint: expected a checkpoint written by atrous train (keys "
                              f"'model', 'model_spec'), got {str(path)!r} with {got}")
    weights = state["model"]
    if not isinstance(weights, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise CheckpointError(f"{where}: 'model' must map parameter names to tensors")
    state["model_spec"] = _check_spec(state["model_spec"], where)
    for key, kind in _FIELDS.items():
        value = state.setdefault(key, _DEFAULTS[key])
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheckpointError(f"{where}: field {key!r} has type {type(value).__name__}")
    if not all(isinstance(h, dict) for h in state["history"]):
        raise CheckpointError(f"{where}: field 'history' must be a list of dicts")
    return state


def load_weights(model: nn.Module, state: dict, path: str | os.PathLike = "checkpoint") -> nn.Module:
    """Load ``state["model"]`` into ``model``; a CheckpointError (one line) if they do not fit."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        own = model.state_dict()
        missing = [k for k in own if k not in state["model"]]
        unexpected = [k for k in state["model"] if k not in own]
        shapes = [k for k in own if k in state["model"] and own[k].shape != state["model"][k].shape]
        raise CheckpointError(
            f"load_checkpoint: {str(path)!r}: its weights do not fit {state['model_spec'].get('name')!r} "
            f"({len(missing)} missing, {len(unexpected)} unexpected, {len(shapes)} of another shape; "
            f"first: {(missing + unexpected + shapes + [_first_line(e)])[0]})"
        ) from e
    return model


def load_model(path: str | os.PathLike, impl: str | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint with its trained weights, in eval mode: ``(model, checkpoint)``.
    Raises :class:`CheckpointError` (one line) for anything :func:`load_checkpoint` refuses, a spec the
    factory rejects, or weights that do not fit the model."""
    state = load_checkpoint(path)
    try:
        model = build_model(state["model_spec"], impl)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"load_checkpoint: {str(path)!r}: cannot build its model "
                              f"{state['model_spec']}: {_first_line(e)}") from e
    load_weights(model, state, path)
    return model.eval(), state
