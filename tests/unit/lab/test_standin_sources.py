"""The stand-in image carries every Arges module its programs import.

The image holds a listed subset of Arges (:data:`arges.lab.standin.image.ARGES` over the agent
image's own files); a module that starts importing a new one fails only when a lab machine boots
the image, minutes into a run. This reads the imports instead, in a moment."""

from __future__ import annotations

import ast
from pathlib import Path

import arges
from arges.agent.image.build import SHARED_MODULES
from arges.lab.standin.image import ARGES

SRC = Path(arges.__file__).parent.parent


def arges_imports(path: Path) -> set[str]:
    """The ``arges`` modules ``path`` imports (``from arges import x`` counts ``arges.x``
    when ``x`` is a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "arges")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "arges":
                continue
            names.add(node.module)
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if (SRC / (sub.replace(".", "/") + ".py")).exists():
                    names.add(sub)
    return names


def test_every_arges_import_of_the_stand_in_is_in_its_image() -> None:
    agent = {p.relative_to(SRC).as_posix() for p in (SRC / "arges/agent").glob("*.py")}
    image = {"arges/__init__.py", *ARGES, *agent, *(f"arges/{m}" for m in SHARED_MODULES)}
    problems = []
    for name in ARGES:
        for module in sorted(arges_imports(SRC / name)):
            path = module.replace(".", "/")
            if f"{path}.py" not in image and f"{path}/__init__.py" not in image:
                problems.append(f"{name} imports {module}, which the stand-in image lacks")
    assert problems == []
