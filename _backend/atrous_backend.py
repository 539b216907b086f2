"""PEP 517 build backend: setuptools', asking for torch and ninja only where the kernels are compiled."""

import os

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (every hook not redefined below)

# The build needs torch's headers and libraries; ATROUS_NO_EXTENSION=1 compiles nothing.
_COMPILE_REQUIRES = ["torch>=2.4", "ninja"]


def _extra() -> list:
    return [] if os.environ.get("ATROUS_NO_EXTENSION", "") not in ("", "0") else list(_COMPILE_REQUIRES)


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + _extra()


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + _extra()
