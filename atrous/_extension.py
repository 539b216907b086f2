"""Loads the compiled extension atrous._C, or explains how to build it (no silent fallback)."""

from __future__ import annotations

import importlib
import json
import os
import warnings
from pathlib import Path

BUILD_HELP = (
    "Build it from the repository root with `make install` (creates .venv) or, inside your own "
    "environment with torch installed, `pip install --no-build-isolation -e .` (a checkout) or "
    "`pip install --no-build-isolation --force-reinstall --no-deps <source or git url>` (an install). "
    "`python -m atrous.info` shows what was built."
)

# Set to 1 at install time (`ATROUS_NO_EXTENSION=1 pip install .`: nothing is compiled) or at run time
# (a checkout or install that should not use its kernels): models run on F.conv2d (impl="torch").
NO_EXTENSION_ENV = "ATROUS_NO_EXTENSION"

_CONFIG_PATH = os.path.join(os.path.dirname(__file__), "_build_config.json")


class ExtensionNotBuiltError(ImportError):
    """The compiled kernels (atrous._C) are missing or do not match the installed torch."""


class TorchMismatchError(ExtensionNotBuiltError):
    """atrous._C was compiled against another torch than the one running."""


class NoExtensionWarning(UserWarning):
    """atrous was installed without its compiled kernels; convolutions run with impl="torch"."""


_module = None


def build_config() -> dict:
    """What setup.py recorded (atrous/_build_config.json), or {} where it never ran."""
    try:
        with open(_CONFIG_PATH) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def mode() -> str:
    """How atrous is installed: "extension" (the compiled kernels; whether they load is :func:`load`'s
    question) or "no-extension" (installed or run with ATROUS_NO_EXTENSION=1: F.conv2d only)."""
    if os.environ.get(NO_EXTENSION_ENV, "") not in ("", "0"):
        return "no-extension"
    return "no-extension" if build_config().get("extension") is False else "extension"


def sources() -> Path | None:
    """The folder of the C++/CUDA sources (``cpu/``, ``cuda/``, ``common/``, ``ops.cpp``): the copy
    shipped inside an installed package (``atrous/csrc``), else the repository's ``csrc/`` of a
    checkout or editable install; None where neither exists."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "csrc", package.parent / "csrc"):
        if (candidate / "ops.cpp").is_file():
            return candidate
    return None


def no_extension_message() -> str:
    why = ("ATROUS_NO_EXTENSION is set" if os.environ.get(NO_EXTENSION_ENV, "") not in ("", "0")
           else "atrous was installed with ATROUS_NO_EXTENSION=1")
    return (f"atrous: the compiled kernels are not available ({why}): models, receptive fields, pictures "
            "and training run with impl='torch' (F.conv2d). To build the kernels (needs a C++ compiler), "
            "unset ATROUS_NO_EXTENSION and reinstall: `pip install --no-build-isolation --force-reinstall "
            "--no-deps <source or git url>` (or `make install` in a checkout).")


def warn_no_extension() -> None:
    """The one warning of a no-extension install (Python shows a warning once per place)."""
    warnings.warn(no_extension_message(), NoExtensionWarning, stacklevel=3)


def check_torch(config: dict, running_version: str, running_cuda: str | None) -> None:
    """TorchMismatchError where ``config`` (the build's record) names another torch version or
    flavour (CUDA version, or CPU-only) than the running one; mixing them ends in undefined symbols
    at best and silent memory corruption at worst."""
    built, built_cuda = config.get("torch"), config.get("torch_cuda")
    if built is None or (built == running_version and built_cuda == running_cuda):
        return
    def flavour(cuda):
        return f"CUDA {cuda}" if cuda else "CPU-only"
    raise TorchMismatchError(
        f"atrous: the compiled kernels were built against torch {built} ({flavour(built_cuda)}), but torch "
        f"{running_version} ({flavour(running_cuda)}) is running (was torch replaced after the build?). "
        "Rebuild them against this torch: `make build` in a checkout, or "
        "`pip install --no-build-isolation --force-reinstall --no-deps <source or git url>`; "
        "or keep torch and use the models without the kernels: ATROUS_NO_EXTENSION=1."
    )


def load():
    """Import atrous._C once (which registers the torch.ops.atrous operators) and return it."""
    global _module
    if _module is not None:
        return _module
    import torch  # (the extension links against torch's libraries)

    if mode() == "no-extension":
        raise ExtensionNotBuiltError(no_extension_message())
    # Before importing: a build for another torch can fail with undefined symbols or, worse, load.
    check_torch(build_config(), torch.__version__, torch.version.cuda)
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
