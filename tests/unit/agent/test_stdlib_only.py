"""The agent's modules (and the shared modules its image carries with them) import only the
standard library files its image carries."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import arges.agent
from arges.agent.image.build import PYTHON_FILES, SHARED_MODULES

AGENT = Path(arges.agent.__file__).parent
DEBIAN_BUILTINS = {"fcntl", "select", "math", "binascii", "zlib", "unicodedata", "array", "grp"}
"""Extension modules Debian links into python3.11 (its ``sys.builtin_module_names``) that
other builds keep as shared objects; the image test checks the agent imports in the image."""


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def shipped(module: str) -> bool:
    parts = module.split(".")
    candidates = ["/".join(parts) + ".py", "/".join(parts) + "/__init__.py"]
    return any(
        c in PYTHON_FILES or any(c.startswith(p) for p in PYTHON_FILES if p.endswith("/"))
        for c in candidates
    )


def test_every_import_is_the_agent_itself_or_a_shipped_stdlib_module() -> None:
    shared = [AGENT.parent / name for name in SHARED_MODULES]
    modules = [*sorted(AGENT.glob("*.py")), *shared]
    assert len(modules) >= 9
    own = {f"arges.{path.stem}" for path in shared}
    problems = []
    for path in modules:
        for name in imports(path) - {"__future__"}:
            top = name.split(".")[0]
            if name.startswith("arges.agent") and not name.startswith("arges.agent.image"):
                continue
            if name in own:
                continue
            if top not in sys.stdlib_module_names:
                problems.append(f"{path.name}: {name} is not in the standard library")
            elif top not in {*sys.builtin_module_names, *DEBIAN_BUILTINS} and not shipped(name):
                problems.append(f"{path.name}: {name} is not among the image's PYTHON_FILES")
    assert problems == []
