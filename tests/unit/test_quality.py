"""The dependency rules (import-linter contracts in pyproject.toml, docs/architecture.md) and the
lint and format rules (ruff) hold for the whole repository: a broken rule fails here, named in the
output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_import_contracts_are_kept():
    r = _run(sys.executable, str(ROOT / "scripts" / "lint_imports.py"))
    assert r.returncode == 0 and "0 broken" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]
    assert "compile/ stands on its own" in r.stdout  # the contracts were read, not an empty config


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).with_name("ruff")
    r = _run(str(ruff), "check", "--no-cache", "--output-format", "concise", ".")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_code_is_formatted():
    """`ruff format` (pyproject.toml's settings) leaves every file as it is."""
    ruff = Path(sys.executable).with_name("ruff")
    r = _run(str(ruff), "format", "--check", "--no-cache", ".")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_no_function_in_compile_is_longer_than_120_lines():
    """compile/ is read by people who know TVM's passes: each step fits on a screen or two."""
    import ast

    long = []
    for path in sorted((ROOT / "compile").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 120:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
