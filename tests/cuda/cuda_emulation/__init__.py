"""The CPU emulation build of the CUDA operators (see build.py)."""
