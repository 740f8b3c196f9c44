"""The install paths agree: requirements.txt (the README's one line, and a Space's) pins what pyproject.toml
declares, and nothing below app.py reaches for the UI or, in viz, for more of lvspec than the trace."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _requirements(lines) -> set[str]:
    return {line.split("#")[0].strip().replace(" ", "") for line in lines} - {""}


def test_requirements_txt_pins_exactly_what_pyproject_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _requirements([*project["dependencies"], *project["optional-dependencies"]["test"]])
    listed = _requirements((ROOT / "requirements.txt").read_text().splitlines())
    assert {r.replace('"', "'") for r in declared} == listed


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}


def test_library_and_renderers_import_no_ui_and_viz_only_the_trace():
    for path in [*(ROOT / "lvspec").rglob("*.py"), *(ROOT / "viz").glob("*.py")]:
        modules = _imports(path)
        assert not {m for m in modules if m.split(".")[0] in ("gradio", "gradio_client")}, path
        if path.parent.name == "viz":
            assert {m for m in modules if m.split(".")[0] == "lvspec"} <= {"lvspec.trace"}, path
