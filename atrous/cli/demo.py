"""The `demo` command (shim until the bench package lands)."""

from atrous.demo import add_arguments, main  # noqa: F401
