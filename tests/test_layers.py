"""The package is layered: a module imports only from its own layer or the ones below, at any
depth of the file (imports inside functions included), so no cycle can hide."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "repmtl"

#: low to high; a module of layer i may import repmtl modules of layers ≤ i
LAYERS = [
    {"hparams", "grads", "linear_gram", "tasks", "model", "metrics", "logkeys", "extras"},
    {"nets", "methods", "regularizers"},
    {"step", "diagnostics"},
    {"benchmarks"},
    {"data"},
    {"train"},
    {"experiments", "bench"},
    {"cli", "__init__"},
]


def _layer(part: str) -> int:
    for index, names in enumerate(LAYERS):
        if part in names:
            return index
    raise AssertionError(f"repmtl.{part} is in no layer of tests/test_layers.py")


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names if n.startswith("repmtl.")][:1]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("repmtl.")]
    return found


def _top(module: str) -> str:
    return module.split(".")[1]


def test_no_module_imports_upward():
    violations = []
    for path in sorted(SRC.rglob("*.py")):
        own = path.relative_to(SRC).parts[0].removesuffix(".py")
        for line, module in _imports(path):
            if _layer(_top(module)) > _layer(own):
                violations.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not violations, "\n".join(violations)


def test_layers_name_every_top_level_module():
    for path in SRC.iterdir():
        if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()):
            _layer(path.name.removesuffix(".py"))
