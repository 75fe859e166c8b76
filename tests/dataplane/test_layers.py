"""The data plane's folders are layers: each imports only from the layers below it.

Every import of every module under ``src/vpngw/dataplane`` (also those inside functions
and ``TYPE_CHECKING`` blocks) is read with :mod:`ast` and checked against ``ALLOWED``:
the core knows no backend, a backend knows no core, and nothing in the data plane reads
through the API's layers (docs/architecture.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vpngw

SRC = Path(vpngw.__file__).parent
DATAPLANE = "vpngw.dataplane"

# Each data-plane package (or top module) and the data-plane packages it may import,
# bottom up. Its own package is always allowed.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "system": {"errors"},
    "spec": {"errors"},
    "backends.base": {"errors", "system", "spec"},
    "charon": {"errors", "system", "backends.base"},
    "observe": {"errors", "system", "spec", "charon"},
    "nodes": {"errors", "backends.base"},
    "backends.lab": {"errors", "system", "spec", "backends.base", "charon"},
    "backends.host": {"errors", "system", "spec", "backends.base", "charon"},
    "core": {"errors", "spec", "backends.base", "charon", "observe", "nodes"},
}
# Layers above the data plane: it must never reach up into them.
ABOVE = ("vpngw.actions", "vpngw.api", "vpngw.auth", "vpngw.cli", "vpngw.console")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a.b import c`` counts as ``a.b``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (write it absolute)"
            assert node.module is not None
            found.add(node.module)
            if node.module in ("vpngw", DATAPLANE):  # from vpngw.dataplane import netns
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _layer(module: str) -> str | None:
    """The key of ``ALLOWED`` that ``module`` belongs to (None: the package root)."""
    if module == DATAPLANE:
        return None
    rest = module[len(DATAPLANE) + 1 :]
    if rest == "backends":  # the package holds only its docstring
        return "backends.base"
    return max((key for key in ALLOWED if rest == key or rest.startswith(key + ".")), key=len, default="?")


def _sources() -> list[Path]:
    return sorted((SRC / "dataplane").rglob("*.py"))


def violations(module: str, imports: set[str]) -> list[str]:
    """What is wrong with ``module`` importing ``imports`` (empty: nothing)."""
    layer = _layer(module)
    found = []
    for imported in sorted(imports):
        if imported.startswith(ABOVE):
            found.append(f"{module} imports {imported} (a layer above the data plane)")
        if not imported.startswith(DATAPLANE + ".") or layer is None:
            continue
        target = _layer(imported)
        if target is None or target == layer:
            continue
        if target == "?" or layer == "?" or target not in ALLOWED[layer]:
            found.append(f"{module} ({layer}) imports {imported} ({target})")
    return found


def test_every_dataplane_module_belongs_to_a_layer() -> None:
    unknown = [_module_name(p) for p in _sources() if _layer(_module_name(p)) == "?"]
    assert unknown == []
    assert len(_sources()) > 20


@pytest.mark.parametrize("path", _sources(), ids=lambda p: _module_name(p))
def test_imports_follow_the_layers(path: Path) -> None:
    assert violations(_module_name(path), _imports(path)) == []


def test_the_check_catches_a_core_module_importing_a_backend_or_an_action(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from vpngw.dataplane.backends.lab.network import LabNetwork\n"
        "def later():\n    from vpngw.actions import registry\n"
        "from vpngw.dataplane.spec.desired import ConnectionSpec\n"
    )
    found = violations("vpngw.dataplane.core.reconciler", _imports(probe))
    assert len(found) == 2
    assert any("backends.lab" in message for message in found)
    assert any("vpngw.actions" in message for message in found)


def test_the_check_catches_a_backend_importing_the_core(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from vpngw.dataplane.core import reconciler\n")
    assert violations("vpngw.dataplane.backends.host.network", _imports(probe)) != []
