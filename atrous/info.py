"""`python -m atrous.info`: the `info` command (atrous/cli/info.py) by the name Makefile and errors cite."""

import argparse
import sys

# The library functions moved to atrous.buildinfo; these names keep old imports working.
from atrous.buildinfo import build_config, collect, compiled_archs, format_report, kernel_table  # noqa: F401
from atrous.cli import info as command

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m atrous.info", description=command.__doc__)
    command.add_arguments(parser)
    sys.exit(command.main(parser.parse_args()))
