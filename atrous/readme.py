"""Rewrites a marked block of a README (the benchmark and experiment tables), leaving the rest untouched."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ReadmeBlockError", "replace_block"]


class ReadmeBlockError(ValueError):
    """The file lacks exactly one ``start`` line followed by one ``end`` line."""


def replace_block(path: str | Path, block: str, start: str, end: str, *,
                  option: str = "--update-readme") -> None:
    """Replace what lies between the ``start`` and ``end`` markers of ``path`` with ``block``.

    ``option`` names the command-line flag in the error, so a user sees which argument to fix.
    """
    path = Path(path)
    if not path.is_file():
        raise ReadmeBlockError(f"{option} {path}: no such file")
    text = path.read_text()
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ReadmeBlockError(f"{option} {path}: expected one '{start}' line followed by one "
                               f"'{end}' line; add them where the table belongs")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    path.write_text(f"{head}{start}\n{block.strip()}\n{end}{tail}")
