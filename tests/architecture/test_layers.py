"""The layer rule of ARCHITECTURE.md: each module is in one layer and imports only its own or lower ones."""

import ast
import re
from pathlib import Path

import pytest

from helpers.paths import ROOT

PACKAGE = ROOT / "atrous"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"


def _layers() -> list[tuple[int, str, list[str]]]:
    """(rank, name, module patterns) from the table between the layers markers of ARCHITECTURE.md."""
    text = ARCHITECTURE.read_text()
    block = text.split("<!-- layers:start -->")[1].split("<!-- layers:end -->")[0]
    rows = []
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            rows.append((int(cells[0]), cells[1], re.findall(r"`(atrous[\w.]*)`", cells[2])))
    return rows


LAYERS = _layers()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _rank(module: str) -> tuple[int, str] | None:
    """The rank and layer of the most specific pattern that matches ``module``."""
    best = None
    for rank, name, patterns in LAYERS:
        for pattern in patterns:
            if module == pattern or module.startswith(pattern + "."):
                if best is None or len(pattern) > best[0]:
                    best = (len(pattern), rank, name)
    return None if best is None else (best[1], best[2])


def _resolve(importer: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """The atrous modules an import statement loads (the longest existing module for each name)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = importer.split(".") if is_package else importer.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" for a in node.names]
    found = []
    for name in names:
        parts = name.split(".")
        while parts and ".".join(parts) not in MODULES:
            parts.pop()
        if parts and parts[0] == "atrous":
            found.append(".".join(parts))
    return found


def _imports(module: str, path: Path):
    """(line, imported module, inside a function) for every atrous import of ``module``."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.extend((child.lineno, target, in_function)
                           for target in _resolve(module, child, is_package))
            visit(child, inner)

    visit(tree, False)
    return out


def test_the_layer_table_is_read():
    assert len(LAYERS) >= 8, "ARCHITECTURE.md lost its layers table"
    ranks = [r for r, _, _ in LAYERS]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_a_layer(module):
    if module == "atrous":
        return  # the package root: a facade (see ARCHITECTURE.md)
    assert _rank(module) is not None, f"{module} matches no layer of ARCHITECTURE.md's table: add it"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "atrous"))
def test_imports_point_down(module):
    rank, layer = _rank(module)
    upward = []
    for line, target, _ in _imports(module, MODULES[module]):
        if target == "atrous":
            continue  # __version__ and friends: the facade imports nothing at import time
        target_rank, target_layer = _rank(target)
        if target_rank > rank:
            upward.append(f"line {line}: {target} ({target_layer}, layer {target_rank})")
    assert not upward, f"{module} ({layer}, layer {rank}) imports from higher layers: " + "; ".join(upward)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_function_level_imports_say_why(module):
    path = MODULES[module]
    lines = path.read_text().splitlines()
    silent = []
    for line, target, in_function in _imports(module, path):
        if not in_function:
            continue
        context = " ".join(lines[max(0, line - 3): line]).lower()
        if "imported here" not in context:
            silent.append(f"line {line}: {target}")
    assert not silent, (f"{module}: function-level imports of atrous modules need a '# Imported here: why' "
                        f"comment on the lines above (else import at the top): " + "; ".join(silent))


def test_a_planted_upward_import_is_caught(tmp_path):
    """The checker itself: a module of the ops layer importing atrous.models is reported."""
    fake = tmp_path / "fake.py"
    fake.write_text("import torch\nfrom atrous.models import get_model\n")
    found = _imports("atrous.ops", fake)
    assert found == [(2, "atrous.models", False)]
    assert _rank("atrous.models")[0] > _rank("atrous.ops")[0]


def test_every_path_the_map_names_exists():
    """ARCHITECTURE.md stays true: each file or folder it names in backticks is in the tree."""
    text = ARCHITECTURE.read_text()
    named = set(re.findall(r"`((?:atrous|csrc|tests|tutorials)/[\w./{},-]*)`", text))
    missing = []
    for path in sorted(named):
        stem = path.split("{")[0].rstrip("/")
        if "..." in stem or "*" in stem:
            continue
        if not (ROOT / stem).exists():
            missing.append(path)
    assert named and not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"
    modules = set(re.findall(r"`(atrous(?:\.\w+)+)`", text))
    facade = {"atrous.segment", "atrous.train"}  # the package root's shortcuts, not modules
    unknown = sorted(m for m in modules - facade if m not in MODULES and not m.startswith("atrous._C"))
    assert not unknown, f"ARCHITECTURE.md names modules that do not exist: {unknown}"
