"""Models by name or by import path (``package.module:attr``), for the analysis of any nn.Module."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .teaching import TEACHING_STACKS

__all__ = ["model_from_spec"]


def model_from_spec(
    spec: str, named: Mapping[str, tuple[Callable[[], nn.Module], Any]] | None = None
) -> nn.Module:
    """A name from ``named`` (``name -> (factory, description)``; default: ``TEACHING_STACKS``), or
    ``package.module:attr`` naming a module instance or a zero-argument factory returning one."""
    named = TEACHING_STACKS if named is None else named
    if spec in named:
        return named[spec][0]()
    if ":" not in spec:
        raise ValueError(f"MODEL {spec!r}: expected one of {', '.join(named)} or 'package.module:factory'")
    module_name, attr = spec.split(":", 1)
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"MODEL {spec!r}: cannot import it ({e})") from e
    model = obj if isinstance(obj, nn.Module) else obj() if callable(obj) else obj
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"MODEL {spec!r}: expected an nn.Module or a factory returning one, got {type(model).__name__}"
        )
    return model
