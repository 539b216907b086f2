"""Shared pytest configuration: hypothesis profiles and common fixtures."""

import os

import torch
from hypothesis import HealthCheck, settings

# CI is derandomized with a bounded example count, so every run draws the same cases and the
# suite's time is predictable. `HYPOTHESIS_PROFILE=dev` draws fresh random cases locally,
# `HYPOTHESIS_PROFILE=thorough` draws many more.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=40,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Float32 convolutions are exact in the tests: torch (cuDNN) and atrous's tensor-core GEMM rung
# both use TF32 when this flag allows it, which the float32 tolerances do not cover. Tests of the
# TF32 path turn it on themselves (torch.backends.cudnn.flags(allow_tf32=True)).
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
