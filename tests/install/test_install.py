"""Installs as a user would: wheels into fresh venvs (--no-index), no-compiler and git installs, tutorials."""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from helpers.paths import ROOT, TUTORIALS

pytestmark = pytest.mark.install

# What a build needs from the repository: copied (mtimes kept) so a build never writes into the
# checkout (setup.py records its build configuration beside the sources) and ninja reuses objects.
BUILD_FILES = ["setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "ARCHITECTURE.md"]
BUILD_DIRS = ["_backend", "csrc", "atrous"]
# The installed torch, numpy, matplotlib, ... of this interpreter, visible from the fresh venvs (a
# .pth line to a folder of links), so nothing is downloaded or copied; the venvs' own site-packages
# come first. atrous itself (this checkout, installed editable) is left out of the view.
OUTER_SITE = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
HIDDEN = re.compile(r"(__editable__[._]+)?atrous", re.IGNORECASE)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ATROUS_NO_EXTENSION")}
    # Local files only: no index, no pip configuration (find-links, constraints) of this machine.
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_INPUT="1", MPLBACKEND="Agg")
    env.update(extra)
    return env


def _run(cmd, *, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or _env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _copy_sources(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in BUILD_FILES:
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "_build_config.json", "csrc")
    for name in BUILD_DIRS:
        shutil.rmtree(dest / name, ignore_errors=True)
        shutil.copytree(ROOT / name, dest / name, ignore=ignore if name == "atrous" else None)
    return dest


def _build_wheel(src: Path, out: Path, **env) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    for stale in (src / "build").glob("lib.*"):  # last session's package files; objects (temp.*) stay
        shutil.rmtree(stale)
    _run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", out, "."], cwd=src,
         env=_env(**env), timeout=3600)
    (wheel,) = out.glob("atrous-*.whl")
    return wheel


def _outer_view(path: Path) -> list[Path]:
    """Folders of links to this interpreter's site-packages entries, atrous excluded."""
    views = []
    for i, site in enumerate(OUTER_SITE):
        view = path / f"outer-site-{i}"
        view.mkdir(parents=True)
        for entry in Path(site).iterdir():
            if not HIDDEN.match(entry.name):
                (view / entry.name).symlink_to(entry)
        views.append(view)
    return views


def _venv(path: Path) -> Path:
    """A fresh venv (no pip, no setuptools of its own) that sees this interpreter's packages."""
    _run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=path).stdout
    views = _outer_view(path / "outer")
    (Path(site.strip()) / "_outer_site.pth").write_text("".join(f"{v}\n" for v in views))
    return python


def _pip_install(python: Path, *args, **env):
    # This pip, run for the venv's interpreter (`pip --python`); dependencies already installed count.
    return _run([sys.executable, "-m", "pip", "--python", python, "install", *args], cwd=python.parent,
                env=_env(**env))


def _bin(python: Path, name: str) -> Path:
    return python.parent / name


@pytest.fixture(scope="session")
def extension_wheel(tmp_path_factory):
    """The wheel with the compiled kernels (CPU only: the CUDA build is the CUDA issue's), built once a
    session in build/install-test/ so ninja recompiles only what changed since the last session."""
    src = _copy_sources(ROOT / "build" / "install-test" / "src")
    return _build_wheel(src, tmp_path_factory.mktemp("wheel"), ATROUS_WITH_CUDA="0")


@pytest.fixture(scope="session")
def pure_wheel(tmp_path_factory):
    """ATROUS_NO_EXTENSION=1: nothing compiled, a py3-none-any wheel."""
    src = _copy_sources(tmp_path_factory.mktemp("pure-src"))
    return _build_wheel(src, tmp_path_factory.mktemp("pure-wheel"), ATROUS_NO_EXTENSION="1")


@pytest.fixture(scope="session")
def extension_venv(extension_wheel, tmp_path_factory):
    python = _venv(tmp_path_factory.mktemp("venv-ext") / "venv")
    _pip_install(python, "--find-links", extension_wheel.parent, "atrous")
    return python


@pytest.fixture(scope="session")
def pure_venv(pure_wheel, tmp_path_factory):
    python = _venv(tmp_path_factory.mktemp("venv-pure") / "venv")
    _pip_install(python, "--find-links", pure_wheel.parent, "atrous")
    return python


def _python(python: Path, code: str, tmp_path: Path, **env) -> str:
    """Run ``code`` in the venv from a folder outside the repository; returns stdout."""
    return _run([python, "-c", textwrap.dedent(code)], cwd=tmp_path, env=_env(**env)).stdout


CHECK_INSTALLED = """
    import sys
    import atrous
    assert atrous.__file__.startswith(sys.prefix), f"imported {atrous.__file__}, not the installed package"
    print("sources", atrous.sources())
"""

CHECK_KERNELS = CHECK_INSTALLED + """
    import torch, torch.nn.functional as F
    from atrous import ops
    from atrous.models import get_model
    from atrous.nn import set_impl
    torch.manual_seed(0)
    x, w = torch.randn(2, 4, 11, 11), torch.randn(4, 1, 3, 3)
    torch.testing.assert_close(ops.depthwise_conv2d(x, w, None, 1, 2, 2), F.conv2d(x, w, None, 1, 2, 2, 4))
    model = get_model("deeplabv3plus_small", num_classes=3, output_stride=16).eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = model(image)
        reference = set_impl(model, "torch")(image)
    assert ours.shape == (1, 3, 64, 64)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)
    print("forward ok")
"""


def test_wheel_with_kernels_installs_and_runs(extension_wheel, extension_venv, tmp_path):
    assert not extension_wheel.name.endswith("-none-any.whl"), extension_wheel.name  # a platform wheel
    info = _run([_bin(extension_venv, "atrous"), "info", "--json"], cwd=tmp_path).stdout
    info = json.loads(info)
    assert info["mode"] == "extension" and info["extension"].startswith(str(extension_venv.parent.parent))
    assert info["kernels"]["depthwise_conv2d"]["CPU"] and info["build"]["torch"] == info["torch"]
    assert "usage: python -m atrous" in _run([_bin(extension_venv, "atrous"), "--help"], cwd=tmp_path).stdout
    out = _python(extension_venv, CHECK_KERNELS, tmp_path)
    assert "forward ok" in out and "site-packages/atrous/csrc" in out.replace(os.sep, "/")


def test_portable_wheel_runs_the_avx2_and_generic_paths(extension_venv, tmp_path):
    """The runtime dispatch: ATROUS_CPU_ISA selects the AVX2 or the baseline kernels of the same wheel."""
    for isa in ("avx2", "generic"):
        check = f"import atrous.buildinfo as b\nassert b.cpu_isa()['active'] == {isa!r}, b.cpu_isa()\n"
        code = textwrap.dedent(CHECK_KERNELS) + check  # dedented first: the check is not indented
        assert "forward ok" in _python(extension_venv, code, tmp_path, ATROUS_CPU_ISA=isa)


def test_a_build_for_another_torch_is_refused_with_how_to_rebuild(extension_venv, tmp_path):
    # The installed build record, edited as if the kernels were compiled against another torch.
    code = CHECK_INSTALLED + """
    import json, os, torch
    from atrous import _extension
    path = _extension._CONFIG_PATH
    config = json.load(open(path))
    config.update(torch="2.13.0+cpu", torch_cuda=None)
    json.dump(config, open(path, "w"))
    try:
        import atrous.ops
    except _extension.TorchMismatchError as e:
        print("refused:", e)
    """
    out = _python(extension_venv, code, tmp_path)
    assert "refused: atrous: the compiled kernels were built against torch 2.13.0+cpu (CPU-only)" in out
    assert "--no-build-isolation --force-reinstall --no-deps" in out


CHECK_NO_EXTENSION = CHECK_INSTALLED + """
    import warnings
    import torch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from atrous.models import get_model
        from atrous.nn import get_impl
        from atrous import receptive_field as rf
    said = [str(w.message) for w in caught if type(w.message).__name__ == "NoExtensionWarning"]
    assert len(said) == 1 and "impl='torch'" in said[0], said
    assert get_impl() == "torch"
    model = get_model("deeplabv3plus_small", num_classes=3, output_stride=16).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    assert rf.receptive_field(rf.TEACHING_STACKS["hybrid"][0](), (41, 41)).supported
    from atrous._extension import ExtensionNotBuiltError
    try:
        import atrous.ops
    except ExtensionNotBuiltError as e:
        print("ops:", e)
    print("forward ok")
"""


def test_no_compiler_install(pure_wheel, pure_venv, tmp_path):
    assert pure_wheel.name.endswith("-py3-none-any.whl"), pure_wheel.name  # nothing compiled
    info = _run([_bin(pure_venv, "atrous"), "info"], cwd=tmp_path).stdout
    assert "mode         no-extension" in info
    out = _python(pure_venv, CHECK_NO_EXTENSION, tmp_path)
    assert "forward ok" in out
    assert re.search(r"ops: atrous: the compiled kernels are not available .*To build the kernels", out)
    # The commands that need no kernels run: rf, and a short training run (impl auto -> torch).
    atrous = _bin(pure_venv, "atrous")
    _run([atrous, "rf", "hybrid", "--input-size", "41", "41", "--no-pictures"], cwd=tmp_path)
    _run([atrous, "train", "--dataset", "shapes", "--train-size", "4", "--val-size", "2",
          "--image-size", "32", "--batch-size", "2", "--epochs", "1", "--no-progress", "--no-pictures",
          "--out", tmp_path / "run"], cwd=tmp_path)
    assert (tmp_path / "run" / "last.pt").is_file()


def test_tutorial_sources_from_an_installed_package(pure_venv, tmp_path):
    """tutorials/ copied outside the repository: every `show(...)` of the notebooks reads the sources
    shipped in the package."""
    copy = shutil.copytree(TUTORIALS, tmp_path / "tutorials", ignore=shutil.ignore_patterns("*.ipynb"))
    calls = sorted({m.group(0) for path in TUTORIALS.glob("*.py")
                    for m in re.finditer(r"""show\("[^"]+", r"[^"]+"\)""", path.read_text())})
    assert len(calls) >= 5, calls
    lines = ["from csrc_source import CSRC, show", *calls, "print('csrc', CSRC)"]
    code = CHECK_INSTALLED + "".join(f"    {line}\n" for line in lines)
    out = _run([pure_venv, "-c", textwrap.dedent(code)], cwd=copy).stdout
    assert f"csrc {pure_venv.parent.parent}" in out, out[-500:]
    assert out.count("// csrc/") == len(calls)


def test_pip_install_from_a_git_url(tmp_path):
    """`pip install git+URL` (a file:// clone of this checkout's last commit), without compiling."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs a git checkout and the git command")
    clone = tmp_path / "clone"
    _run(["git", "clone", "--quiet", ROOT, clone], cwd=tmp_path)
    if not (clone / "_backend").is_dir():
        pytest.skip("the last commit predates the packaging (pyproject [project]); commit first")
    python = _venv(tmp_path / "venv")
    _pip_install(python, "--no-build-isolation", f"atrous @ git+{clone.as_uri()}", ATROUS_NO_EXTENSION="1")
    out = _run([_bin(python, "atrous"), "info"], cwd=tmp_path).stdout
    assert "mode         no-extension" in out


def test_building_without_torch_says_what_to_run(tmp_path):
    """setup.py in an environment without torch: one line naming the commands, not a traceback."""
    src = _copy_sources(tmp_path / "src")
    hide = tmp_path / "hide"  # first on the path: `import torch` fails as it does where torch is absent
    (hide / "torch").mkdir(parents=True)
    (hide / "torch" / "__init__.py").write_text("raise ImportError('No module named torch (hidden)')\n")
    proc = subprocess.run([sys.executable, "setup.py", "build_ext"], cwd=src, env=_env(PYTHONPATH=str(hide)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("atrous: compiling the kernels needs torch"), proc.stderr[-2000:]
    assert "pip install --no-build-isolation ." in last and "ATROUS_NO_EXTENSION=1 pip install ." in last
    assert "Traceback" not in proc.stderr
