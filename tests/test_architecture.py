"""The package's shape: layers import downwards only, no import cycle, no global state
changed by importing it, and no analysis kind switched on outside the registry."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "hlh_meta"
#: each top-level module or sub-package and its layer; a layer imports only from lower ones
LAYERS = {"errors": -1, "spec": 0, "workers": 0, "data": 1, "freshness": 2, "effects": 2, "inference": 2, "models": 3, "analyses": 4,
          "sensitivity": 5, "report": 5, "result": 6, "pipeline": 7, "orchestrate": 8,
          "cli": 9}


def _module(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["hlh_meta", *parts])


def _imports(path: Path) -> set[str]:
    """Modules of the package this file imports, wherever the import statement is, except
    under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + (node.module.split(".") if node.module else [])) if node.level else node.module
            if target and target.startswith("hlh_meta"):
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("hlh_meta"))
    files = {_module(p) for p in SRC.rglob("*.py")}
    return {m for m in out if m in files}


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) - {_module(p)} for p in SRC.rglob("*.py")}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_module_has_a_layer():
    assert all(_layer(m) is not None for m in _graph() if m != "hlh_meta"), sorted(m for m in _graph() if _layer(m) is None)


def test_layers_import_downwards_only():
    bad = []
    for module, targets in _graph().items():
        if module == "hlh_meta":        # the package's lazy re-exports
            continue
        for t in targets:
            if t == "hlh_meta":
                continue
            same_package = module.split(".")[1] == t.split(".")[1]
            if not same_package and _layer(t) >= _layer(module):
                bad.append(f"{module} imports {t}")
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_no_kind_switch_or_label_matching_outside_the_registry():
    text = {p: p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}
    assert not [p for p, t in text.items() if re.search(r"\b(spec|result|analysis)\.kind\s*[!=]=", t) and p.name != "registry.py"]
    assert not [p for p, t in text.items() if re.search(r"\[\"quantity\"\]\.str\.|\"typical\" in|startswith\(\"infection", t)]


def test_importing_changes_no_global_state():
    """Importing the package, its models, report and command line sets no logger level, no
    matplotlib backend and no warning filter (beyond what the libraries it uses set on import)."""
    script = """
import logging, warnings, matplotlib
import pymc, pytensor, arviz, nutpie, numba, pandera, pandas, xarray, jinja2, typer, rich, scipy.stats
before = (logging.getLogger("pymc").level, logging.getLogger("pytensor").level, matplotlib.get_backend(),
          len(warnings.filters))
import hlh_meta, hlh_meta.report.figures, hlh_meta.models.binomial, hlh_meta.pipeline, hlh_meta.cli
after = (logging.getLogger("pymc").level, logging.getLogger("pytensor").level, matplotlib.get_backend(),
         len(warnings.filters))
print(before == after, before, after)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={"MPLBACKEND": "svg", "PATH": "/usr/bin:/bin"})
    assert out.stdout.startswith("True"), out.stdout + out.stderr


def test_command_line_help_does_not_import_the_models():
    out = subprocess.run([sys.executable, "-c", "import sys, hlh_meta.cli; print('pymc' in sys.modules)"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
