"""The `rf` command (shim until the receptive_field package lands)."""

from atrous.rf_cli import add_arguments, main  # noqa: F401
