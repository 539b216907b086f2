"""The model registry: every named DeepLab factory, looked up by name (timm's ``register_model`` pattern)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

__all__ = ["MODELS", "get_model", "list_models", "register_model"]

# name -> factory(num_classes=..., output_stride=..., **kwargs); filled by @register_model as the
# architecture modules are imported (atrous.models imports them all).
MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: add ``factory`` to :data:`MODELS` under its function name."""
    name = factory.__name__
    if name in MODELS and MODELS[name] is not factory:
        raise ValueError(f"register_model: a model named {name!r} is already registered")
    MODELS[name] = factory
    return factory


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names in registration order; ``pattern`` filters them by glob ("deeplabv3plus_*")."""
    return [name for name in MODELS if pattern is None or fnmatch.fnmatchcase(name, pattern)]


def get_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name``; keyword arguments go to its factory (``num_classes``,
    ``output_stride``, ``impl``, ...)."""
    if name not in MODELS:
        raise ValueError(f"get_model: expected a model name from atrous.models.list_models() "
                         f"({', '.join(MODELS)}), got {name!r}")
    return MODELS[name](**kwargs)
