"""atrous: hand-written atrous (dilated) convolution kernels and the DeepLab models built on them."""

__version__ = "0.1.0"

# Submodules are imported on use: `import atrous` must work before the C++ extension is built,
# so that `python -m atrous.info` can say what is missing.
__all__ = ["__version__", "segment", "sources", "train"]

# Package-level shortcuts, resolved on first access (PEP 562) so that `import atrous` stays light.
_LAZY = {"segment": ("atrous.inference", "segment"), "train": ("atrous.training", "train")}


def sources():
    """The folder of the C++/CUDA kernel sources the tutorials show (a ``pathlib.Path``): the copy
    shipped in the installed package, or the repository's ``csrc/`` in a checkout."""
    # Imported here: the facade imports nothing at import time (_extension loads no compiled code).
    from ._extension import sources as find

    path = find()
    if path is None:
        raise FileNotFoundError("atrous.sources(): this installation ships no C++/CUDA sources (expected "
                                "atrous/csrc in the package or csrc/ beside it); reinstall from a source "
                                "tree or wheel built by setup.py")
    return path


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atrous' has no attribute {name!r}")
