"""The interactive pictures: sliders with ipywidgets in a kernel, the static picture without them."""

import builtins
import types

import pytest
from matplotlib.figure import Figure

import atrous.viz.interactive as interactive
from atrous.receptive_field.arithmetic import reachable_offsets

ipywidgets = pytest.importorskip("ipywidgets", reason="the slider tests need ipywidgets (in the test extra)")


@pytest.fixture
def kernel(monkeypatch):
    """Pretend an IPython kernel runs, so the rule chooses the sliders."""
    shell = types.SimpleNamespace(kernel=object())
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    monkeypatch.delenv("ATROUS_STATIC_FIGURES", raising=False)
    return shell


@pytest.fixture
def no_ipywidgets(monkeypatch):
    real_import = builtins.__import__

    def fail(name, *args, **kwargs):
        if name == "ipywidgets" or name.startswith("ipywidgets."):
            raise ImportError("ipywidgets hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fail)
    monkeypatch.setattr(interactive.importlib, "import_module",
                        lambda name: fail(name) if name.startswith("ipywidgets") else real_import(name))


def _sliders(widget):
    return {child.description: child for child in widget.children if isinstance(child, ipywidgets.IntSlider)}


def test_the_rule(kernel, monkeypatch):
    assert interactive.widgets_available()
    monkeypatch.setenv("ATROUS_STATIC_FIGURES", "1")
    assert not interactive.widgets_available()


def test_no_kernel_no_sliders(monkeypatch):
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert not interactive.widgets_available()
    assert isinstance(interactive.interactive_gridding(), Figure)


def test_dilated_grid_sliders_redraw(kernel):
    widget = interactive.interactive_dilated_grid(kernel_size=3, rate=2, stride=1, input_size=9)
    sliders = _sliders(widget)
    assert set(sliders) == {"kernel k", "rate d", "stride s", "input size"}
    assert "k_eff=5" in widget.result.axes[0].get_title()
    sliders["rate d"].value = 4
    assert "k_eff=9" in widget.result.axes[0].get_title()  # 3 + 2 * 3
    sliders["stride s"].value = 2
    assert "output 5x5" in widget.result.axes[0].get_title()  # (9 + 8 - 9) // 2 + 1


def test_gridding_sliders_name_the_holes(kernel):
    widget = interactive.interactive_gridding((2, 2, 2))
    assert widget.result._suptitle.get_text() == "holes at offsets 1, 3, 5"  # equal rates: only even offsets
    sliders = _sliders(widget)
    sliders["rate 1"].value, sliders["rate 2"].value, sliders["rate 3"].value = 1, 2, 5
    assert widget.result._suptitle.get_text() == "no holes"
    assert reachable_offsets((1, 2, 5)) == set(range(-8, 9))


def test_aspp_sliders(kernel):
    widget = interactive.interactive_aspp_coverage(image_size=129)
    assert set(_sliders(widget)) == {"rate 1", "rate 2", "rate 3", "output stride"}
    assert isinstance(widget.result, Figure) and widget.result.axes


@pytest.mark.parametrize("make", [interactive.interactive_dilated_grid, interactive.interactive_gridding,
                                  lambda: interactive.interactive_aspp_coverage(image_size=129)])
def test_without_ipywidgets_the_static_picture(kernel, no_ipywidgets, make):
    assert not interactive.widgets_available()
    fig = make()
    assert isinstance(fig, Figure) and fig.axes  # a real drawing, displayed as PNG in Jupyter


def test_static_grid_by_hand():
    fig = interactive.dilated_grid_figure(kernel_size=3, rate=3, stride=1, input_size=7, output=0)
    taps = [p for p in fig.axes[0].patches if p.get_facecolor()[:3] != (1.0, 1.0, 1.0)]
    # Output 0 with padding 3 reads rows and columns -3, 0, 3: 4 taps inside the 7x7 image.
    inside = [p for p in taps if p.get_width() == 1 and tuple(round(v, 3) for v in p.get_facecolor()[:3])
              == (0.122, 0.373, 0.6)]
    assert len(inside) == 4
    with pytest.raises(ValueError, match="output must be in 0..6"):
        interactive.dilated_grid_figure(input_size=7, output=7)
