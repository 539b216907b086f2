"""The `info` command (shim until csrc restructure lands)."""

from atrous.info import add_arguments, main  # noqa: F401
