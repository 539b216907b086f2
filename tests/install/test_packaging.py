"""Packaging without building: metadata, the torch check, the no-extension mode, the shipped sources."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import atrous
from atrous import _extension

from helpers.paths import ROOT

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11 (tomllib)")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_project_metadata_and_console_script():
    project = PYPROJECT["project"]
    assert project["name"] == "atrous" and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "atrous.__version__"}
    assert project["scripts"] == {"atrous": "atrous.__main__:main"}
    assert set(project["optional-dependencies"]) >= {"test", "tutorials", "data"}
    assert "ipywidgets" in project["optional-dependencies"]["tutorials"]
    build = PYPROJECT["build-system"]
    assert build["build-backend"] == "atrous_backend" and (ROOT / build["backend-path"][0]).is_dir()


def test_no_extra_can_replace_the_users_torch():
    # torchvision and timm each require one torch release: an extra naming them would make pip swap torch.
    pinned = ("torch", "torchvision", "timm", "torchaudio")
    for extra, requirements in PYPROJECT["project"]["optional-dependencies"].items():
        names = [r.split(";")[0].split("[")[0].strip().split("=")[0].split(">")[0].split("<")[0].lower()
                 for r in requirements]
        assert not set(names) & set(pinned), f"extra {extra!r} names {set(names) & set(pinned)}"
    torch_req = [r for r in PYPROJECT["project"]["dependencies"] if r.startswith("torch")]
    assert torch_req == ["torch>=2.4"]  # a floor, never a pin or a build


def test_backend_asks_for_torch_only_when_compiling(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "_backend"))
    import atrous_backend

    monkeypatch.delenv("ATROUS_NO_EXTENSION", raising=False)
    assert atrous_backend._extra() == ["torch>=2.4", "ninja"]
    monkeypatch.setenv("ATROUS_NO_EXTENSION", "1")
    assert atrous_backend._extra() == []


@pytest.mark.parametrize("built, running", [
    (("2.13.0+cpu", None), ("2.14.1+cu130", "13.0")),  # the case: extras replaced torch
    (("2.14.1+cu130", "13.0"), ("2.14.1+cpu", None)),  # same version, another flavour
    (("2.14.1+cu128", "12.8"), ("2.14.1+cu130", "13.0")),
])
def test_another_torch_than_the_build_is_refused(built, running):
    config = {"torch": built[0], "torch_cuda": built[1]}
    with pytest.raises(_extension.TorchMismatchError) as info:
        _extension.check_torch(config, *running)
    message = str(info.value)
    assert "\n" not in message and built[0] in message and running[0] in message
    assert "--no-build-isolation --force-reinstall --no-deps" in message and "make build" in message
    assert isinstance(info.value, ImportError)  # callers that catch ExtensionNotBuiltError see it


def test_the_same_torch_or_no_record_passes():
    _extension.check_torch({"torch": "2.14.1+cu130", "torch_cuda": "13.0"}, "2.14.1+cu130", "13.0")
    _extension.check_torch({}, torch.__version__, torch.version.cuda)  # never built: the import says so


def test_this_build_matches_the_running_torch():
    config = _extension.build_config()
    if "torch" not in config:
        pytest.skip("the extension was not built by setup.py here (no atrous/_build_config.json)")
    assert (config["torch"], config["torch_cuda"]) == (torch.__version__, torch.version.cuda)


def test_sources_in_a_checkout_are_the_repository_csrc():
    assert atrous.sources() == ROOT / "csrc"
    assert (atrous.sources() / "cpu" / "depthwise_v0_naive.cpp").is_file()


def test_no_extension_at_run_time_falls_back_once_and_ops_say_how_to_build():
    code = textwrap.dedent("""
        import warnings, torch
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from atrous.models import get_model
            from atrous.nn import get_impl
            from atrous.training import resolve_impl
        said = [w for w in caught if type(w.message).__name__ == "NoExtensionWarning"]
        assert len(said) == 1, [str(w.message) for w in caught]
        assert get_impl() == "torch" and resolve_impl("auto", torch.device("cpu")) == "torch"
        model = get_model("deeplabv3plus_small", num_classes=2, output_stride=16).eval()
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2, 32, 32)
        import sys
        assert "atrous._C" not in sys.modules
        try:
            import atrous.ops
        except ImportError as e:
            print(type(e).__name__, e)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ATROUS_NO_EXTENSION": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ExtensionNotBuiltError atrous: the compiled kernels are not available")
    assert "To build the kernels" in proc.stdout
    info = subprocess.run([sys.executable, "-m", "atrous", "info"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert info.returncode == 0 and "mode         no-extension" in info.stdout
