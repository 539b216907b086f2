"""The `bench` command (shim until the bench package lands)."""

from atrous.bench import add_arguments, main  # noqa: F401
