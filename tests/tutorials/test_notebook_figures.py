"""Each notebook executed as Jupyter runs it (no MPLBACKEND) shows its figures as pictures, never as text.

This is the suite's one execution of each notebook: it runs top to bottom (its asserts are its claims)
with the tutorials folder as working directory and ATROUS_TUTORIAL_SMALL=1, but without the Agg
backend the rest of the suite uses, so ipykernel picks the inline backend exactly as JupyterLab does.
A cell that makes a figure must produce ``image/png`` (or ``image/svg+xml``, or ``text/html`` for an
animation); a figure that comes out only as the text ``<Figure size ... with N Axes>`` fails, and the
number of pictures per notebook is pinned in ``FIGURES``.
"""

import glob
import os
import types

import jupytext
import nbformat
import pytest
from IPython.core.formatters import DisplayFormatter
from matplotlib.figure import Figure
from nbclient import NotebookClient

from atrous import viz
from atrous.viz.display import enable_figure_display

from helpers import paths

ROOT = str(paths.ROOT)
TUTORIALS = os.path.join(ROOT, "tutorials")
SOURCES = sorted(glob.glob(os.path.join(TUTORIALS, "[0-9][0-9]_*.py")))
PICTURES = ("image/png", "image/svg+xml", "text/html")
FIGURE_TEXT = "<Figure size"

# Pictures each notebook shows (under ATROUS_TUTORIAL_SMALL=1): a notebook that loses one fails here.
FIGURES = {
    "01_atrous_by_hand": 5,
    "02_receptive_fields": 3,
    "03_writing_the_cpu_kernel": 1,
    "04_the_cuda_kernel": 2,
    "05_the_emulator_lab": 0,
    "06_pointwise_gemm_and_separable": 3,
    "07_dense_atrous_im2col": 0,
    "08_benchmarking": 3,
    "09_xception_output_stride": 4,
    "10_aspp": 4,
    "11_decoder_and_training": 8,
    "12_when_does_atrous_help": 5,
}


def _name(path):
    return os.path.splitext(os.path.basename(path))[0]


def figure_outputs(notebook) -> tuple[int, list[str]]:
    """(pictures shown, problems): a problem is a cell whose figure came out as text only."""
    pictures, problems = 0, []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                text = output.get("text", "")
            elif output.output_type in ("display_data", "execute_result"):
                data = output.get("data", {})
                if any(mime in data for mime in PICTURES):
                    pictures += 1
                    continue
                text = data.get("text/plain", "")
            else:
                continue
            if FIGURE_TEXT in text:
                problems.append(f"cell {index} shows a figure as text: {text.strip()[:80]!r}")
    return pictures, problems


def test_notebooks_pin_their_figure_counts():
    assert sorted(FIGURES) == sorted(_name(s) for s in SOURCES)


def test_figure_displays_as_png_and_animation_as_html():
    formatter = DisplayFormatter()
    assert enable_figure_display(types.SimpleNamespace(display_formatter=formatter))
    data, _ = formatter.format(viz.plot_dilated_kernel(kernel_size=3, rates=(1, 2), input_size=7))
    assert data["image/png"].startswith(b"\x89PNG") and "text/html" not in data
    data, _ = formatter.format(viz.animate_dilated_conv(rate=2, input_size=4))
    assert "<script" in data["text/html"] and data["text/html"].count("data:image/png;base64") == 16


def test_registration_is_renewed_before_each_cell():
    """pyplot's inline backend pops every Figure printer when it starts; the next cell gets ours back."""
    from IPython.core.events import EventManager, available_events

    shell = types.SimpleNamespace(display_formatter=DisplayFormatter())
    shell.events = EventManager(shell, available_events)
    assert enable_figure_display(shell) and enable_figure_display(shell)
    assert len(shell.events.callbacks["pre_run_cell"]) == 1  # registered once
    for formatter in shell.display_formatter.formatters.values():  # what the inline backend does
        formatter.pop(Figure, None)
    shell.events.trigger("pre_run_cell", None)
    data, _ = shell.display_formatter.format(viz.animate_dilated_conv(rate=1, input_size=3))
    assert "image/png" in data and "<script" in data["text/html"]


def test_no_shell_no_registration():
    assert enable_figure_display() is False  # pytest runs no IPython shell: nothing is touched


def test_the_checker_sees_a_figure_printed_as_text():
    nb = jupytext.reads("# %%\nfig\n", fmt="py:percent")
    nb.cells[0].outputs = [nbformat.v4.new_output(
        "execute_result", data={"text/plain": "<Figure size 640x480 with 1 Axes>"}, execution_count=1)]
    assert figure_outputs(nb) == (0, ["cell 0 shows a figure as text: '<Figure size 640x480 with 1 Axes>'"])
    nb.cells[0].outputs[0]["data"]["image/png"] = "iVBOR"
    assert figure_outputs(nb) == (1, [])


@pytest.mark.parametrize("source", SOURCES, ids=_name)
def test_notebook_runs_and_shows_its_figures(source, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # as Jupyter: ipykernel chooses the inline backend
    monkeypatch.setenv("ATROUS_TUTORIAL_SMALL", "1")
    monkeypatch.setenv("ATROUS_CUDA_STANDIN", "1")  # notebook 5 compiles as on a machine without CUDA
    monkeypatch.setenv("ATROUS_STATIC_FIGURES", "1")  # headless: interactive cells draw the static picture
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    notebook = jupytext.read(source)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": TUTORIALS}})
    client.execute()
    pictures, problems = figure_outputs(notebook)
    assert not problems, "\n".join(problems)
    assert pictures == FIGURES[_name(source)], f"{pictures} pictures, expected {FIGURES[_name(source)]}"
