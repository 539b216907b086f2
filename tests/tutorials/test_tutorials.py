"""The tutorial notebooks match their sources and their worked solutions check out.

Every tutorial is a jupytext pair: `tutorials/NN_name.py` (py:percent, the reviewable source) and
`tutorials/NN_name.ipynb` (committed without outputs). The notebooks are executed, as Jupyter runs
them, by `test_notebook_figures.py` (once each: the suite is slow already).
"""

import glob
import os
import runpy
import sys

import jupytext
import nbformat
import pytest

from helpers import paths

ROOT = str(paths.ROOT)
TUTORIALS = os.path.join(ROOT, "tutorials")
SOURCES = sorted(glob.glob(os.path.join(TUTORIALS, "[0-9][0-9]_*.py")))
SOLUTIONS = sorted(glob.glob(os.path.join(TUTORIALS, "solutions", "[0-9][0-9]_*.py")))


def _name(path):
    return os.path.splitext(os.path.basename(path))[0]


def test_there_are_tutorials():
    assert SOURCES, "no tutorials/NN_*.py found"


@pytest.mark.parametrize("source", SOURCES, ids=_name)
def test_notebook_is_paired_with_its_source_and_has_no_outputs(source):
    ipynb = source[:-3] + ".ipynb"
    assert os.path.exists(ipynb), f"{ipynb} is missing: run `jupytext --sync {source}`"
    from_py = jupytext.read(source)
    from_nb = nbformat.read(ipynb, as_version=4)
    cells = [(c.cell_type, c.source) for c in from_py.cells]
    assert cells == [(c.cell_type, c.source) for c in from_nb.cells], (
        f"{ipynb} differs from {source}: run `jupytext --sync {source}`")
    assert all(not c.get("outputs") for c in from_nb.cells if c.cell_type == "code"), (
        f"{ipynb} keeps outputs; clear them (`jupytext --sync` writes none)")


@pytest.mark.parametrize("solution", SOLUTIONS, ids=_name)
def test_solutions_check_out(solution, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setattr(sys, "argv", [solution])
    runpy.run_path(solution, run_name="__main__")
