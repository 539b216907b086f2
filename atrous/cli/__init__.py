"""The commands of `python -m atrous`: one thin module per command, with `add_arguments` and `main`.

A command parses its flags and calls library functions; it holds no library logic. Commands turn
bad input into a one-line `COMMAND: error: ...` on stderr and exit status 2.
"""
