"""docs/architecture.md names real code: every `path.py:function` hop is defined in that file."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
HOP = re.compile(r"`([\w/]+\.py):([\w.]+)`")


def _defined(path: Path) -> set[str]:
    """Top-level functions and classes of a module, and methods as `Class.method`."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}.{item.name}")
    return names


def test_every_hop_names_a_function_defined_in_its_file() -> None:
    hops = HOP.findall(DOC.read_text())
    assert len(hops) >= 30, "the two walks are there"
    missing = [
        f"{path}:{name}"
        for path, name in hops
        if not (ROOT / path).is_file() or name not in _defined(ROOT / path)
    ]
    assert not missing, f"docs/architecture.md names code that is not there: {missing}"


def test_the_readme_sends_readers_to_the_architecture_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/architecture.md" in readme
    assert "shared folder" not in readme
