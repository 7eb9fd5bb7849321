"""The layering rule and the wheel's layout, checked from the source (no imports, instant).

The library never imports its front-ends: only rag/cli.py (itself a front-end) wires in the UI
(ui/, installed as rag_ui) and the eval (eval/, installed as rag_eval). Tests never import bench/.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRONT_ENDS = {"ui", "eval", "rag_ui", "rag_eval", "bench", "tests"}


def _imported_roots(path: Path) -> set[str]:
    """Top-level names `path` imports anywhere (functions included); relative imports skipped."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_library_never_imports_a_front_end() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & FRONT_ENDS)
        for path in (ROOT / "rag").rglob("*.py")
        if path != ROOT / "rag" / "cli.py"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def _imported_modules(path: Path) -> set[str]:
    """Dotted names `path` imports (for `from a import b`: a and a.b), relative ones skipped."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_stages_never_import_the_engine_that_calls_them() -> None:
    """Only the front-ends (cli, api) and the package's own `__init__` reach up to Assistant; the
    pipeline is built by Assistant, not imported by the stages it runs."""
    engine = {"rag.assistant", "rag.pipeline"}
    callers = {
        ROOT / "rag" / name for name in ("cli.py", "__init__.py", "assistant.py", "pipeline.py")
    }
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_modules(path) & engine)
        for path in (ROOT / "rag").rglob("*.py")
        if path not in callers and "api" not in path.relative_to(ROOT).parts
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_front_ends_import_each_other_by_relative_or_installed_name() -> None:
    """Inside ui/ and eval/ an absolute `ui.`/`eval.` import would break in the wheel, where the
    folders are rag_ui and rag_eval."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & {"ui", "eval"})
        for folder in ("ui", "eval")
        for path in (ROOT / folder).glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_tests_never_import_bench() -> None:
    offenders = [
        path.name for path in (ROOT / "tests").rglob("*.py") if "bench" in _imported_roots(path)
    ]
    assert offenders == []


def test_the_wheel_lists_every_package_and_no_generic_top_level_name() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    packages = set(config["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "rag").rglob("__init__.py")
    }
    missing = on_disk - packages
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    assert {name.split(".")[0] for name in packages} == {"rag", "rag_ui", "rag_eval"}
    assert config["setuptools"]["package-dir"] == {"rag_ui": "ui", "rag_eval": "eval"}
