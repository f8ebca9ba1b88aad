"""The layers of docs/architecture.md hold, and their checks catch what breaks them.

`make test` runs import-linter, ruff and mypy over the tree before pytest; these tests
show that the import contracts bite (an import that breaks a layer fails them) and
that the tree keeps the shape the architecture page describes.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "transforms")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_LINES = 500
MAX_DOFN_LINES = 65  # "about 60": a DoFn stays a thin adapter


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the packages under ``root``, with the project's contracts."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_its_import_contracts() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_beam_imported_into_the_event_model_breaks_the_pure_model_contract(
    tree_copy: Path,
) -> None:
    _append(tree_copy / "transforms/model/naming.py", "import apache_beam  # noqa: E402, F401")
    result = _lint_imports(tree_copy)
    assert result.returncode != 0
    assert "The event model imports neither Beam nor a Google client BROKEN" in result.stdout
    assert "transforms.model.naming -> apache_beam" in result.stdout


def test_a_google_client_in_the_event_model_breaks_it_too(tree_copy: Path) -> None:
    _append(tree_copy / "transforms/model/infer.py", "from google.cloud import bigquery")
    result = _lint_imports(tree_copy)
    assert "The event model imports neither Beam nor a Google client BROKEN" in result.stdout


def test_the_warehouse_importing_a_dofn_breaks_the_layers(tree_copy: Path) -> None:
    _append(tree_copy / "pipeline/warehouse/views.py", "from transforms.beam import write")
    result = _lint_imports(tree_copy)
    assert result.returncode != 0
    assert "Layers point down" in result.stdout and "BROKEN" in result.stdout
    assert "pipeline.warehouse.views -> transforms.beam.write" in result.stdout


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_no_product_file_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_dofn_is_over_about_60_lines() -> None:
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                ast.unparse(base).endswith(("DoFn", "_Client")) for base in node.bases
            ):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_DOFN_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.name}"] = lines
    assert long == {}


def test_every_module_opens_with_a_docstring() -> None:
    missing = [
        str(p.relative_to(ROOT))
        for p in _modules()
        if p.read_text().strip() and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert missing == []


def test_the_architecture_page_names_every_sub_package_and_only_those() -> None:
    page = (ROOT / "docs/architecture.md").read_text()
    named = set(re.findall(r"`((?:pipeline|transforms)(?:/\w+)+)/`", page))
    on_disk = {
        str(init.parent.relative_to(ROOT))
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
        if init.parent != ROOT / package
    }
    assert named == on_disk
