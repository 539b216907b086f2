"""atrous: hand-written atrous (dilated) convolution kernels and the DeepLab models built on them."""

__version__ = "0.1.0"

# Submodules are imported on use: `import atrous` must work before the C++ extension is built,
# so that `python -m atrous.info` can say what is missing.
__all__ = ["__version__", "segment", "train"]

# Package-level shortcuts, resolved on first access (PEP 562) so that `import atrous` stays light.
_LAZY = {"segment": ("atrous.inference", "segment"), "train": ("atrous.training", "train")}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atrous' has no attribute {name!r}")
