"""Loads the compiled extension atrous._C, or explains how to build it (no silent fallback)."""

from __future__ import annotations

import importlib

BUILD_HELP = (
    "Build it from the repository root with `make install` (creates .venv) or, inside your own "
    "environment with torch installed, `pip install --no-build-isolation -e .`. "
    "`python -m atrous.info` shows what was built."
)


class ExtensionNotBuiltError(ImportError):
    """The compiled kernels (atrous._C) are missing or do not match the installed torch."""


_module = None


def load():
    """Import atrous._C once (which registers the torch.ops.atrous operators) and return it."""
    global _module
    if _module is not None:
        return _module
    import torch  # noqa: F401  (the extension links against torch's libraries)

    try:
        _module = importlib.import_module("atrous._C")
    except ImportError as exc:  # missing file, or built against another torch (undefined symbols)
        raise ExtensionNotBuiltError(
            f"atrous: the compiled extension atrous._C could not be loaded ({exc}). {BUILD_HELP} "
            "If it was built before torch was upgraded, rebuild it the same way."
        ) from exc
    return _module


def try_load():
    """The extension module, or None with the reason as a string (for `atrous.info`)."""
    try:
        return load(), None
    except ExtensionNotBuiltError as exc:
        return None, str(exc)
    except RuntimeError as exc:  # ATROUS_CPU_ISA names a set this build or CPU cannot run
        if "ATROUS_CPU_ISA" not in str(exc):
            raise
        return None, str(exc)
