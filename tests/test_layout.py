"""The packages' import boundaries: simulator imports torch alone; converter and exporters build on
simulator only; the application layer ann2snn is the one place where all three meet."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"ann2snn", "converter", "simulator", "exporters"}
#: Deprecated aliases of moved modules (converter.zoo -> ann2snn.zoo, converter.cli -> ann2snn.cli).
ALIASES = {ROOT / "converter" / "zoo", ROOT / "converter" / "cli"}
ALLOWED = {"simulator": {"simulator"}, "converter": {"converter", "simulator"}, "exporters": {"exporters", "simulator"}}
THIRD_PARTY = {"simulator": {"torch"}}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _files(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if not any(a in p.parents for a in ALIASES)]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_library_packages_import_only_what_the_design_allows(package):
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _files(package)
        for name in _imports(path) & OURS - ALLOWED[package]
    }
    assert not offending


def test_simulator_depends_on_torch_alone():
    import sys

    stdlib = set(sys.stdlib_module_names)
    foreign = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _files("simulator")
        for name in _imports(path) - stdlib - OURS - THIRD_PARTY["simulator"] - {"__future__"}
    }
    assert not foreign
