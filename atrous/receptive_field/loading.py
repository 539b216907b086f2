"""Models by name or by import path (``package.module:attr``), for the analysis of any nn.Module."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .teaching import TEACHING_STACKS

__all__ = ["model_from_spec"]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


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
    except Exception as e:  # ImportError, AttributeError, or whatever the module raises as it runs
        raise ValueError(f"MODEL {spec!r}: cannot import it ({type(e).__name__}: {_first_line(e)})") from e
    try:
        model = obj if isinstance(obj, nn.Module) else obj() if callable(obj) else obj
    except Exception as e:  # the factory's own error, as one line
        raise ValueError(f"MODEL {spec!r}: the factory failed ({type(e).__name__}: {_first_line(e)})") from e
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"MODEL {spec!r}: expected an nn.Module or a factory returning one, got {type(model).__name__}"
        )
    return model
