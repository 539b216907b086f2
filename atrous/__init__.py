"""atrous: hand-written atrous (dilated) convolution kernels and the DeepLab models built on them."""

__version__ = "0.1.0"

# Submodules are imported on use: `import atrous` must work before the C++ extension is built,
# so that `python -m atrous.info` can say what is missing.
__all__ = ["__version__"]
