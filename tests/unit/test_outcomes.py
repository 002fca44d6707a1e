"""tests/outcomes.py + tests/conftest.py: a check this machine cannot run shows as NOT RUN with
its reason, is never counted as passed, and is no failure under EDGEOPT_STRICT_SKIPS=1, where a
plain skip is. Run in a pytest of its own on a copy of the two files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

CASES = """
import pytest
from tests.outcomes import not_run

def test_needs_hardware():
    not_run("the CPU lacks the instruction")

def test_needs_a_package():
    pytest.skip("a package is missing")

def test_plain():
    assert True
"""


def _pytest(root: Path, strict: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGEOPT_STRICT_SKIPS"}
    if strict:
        env["EDGEOPT_STRICT_SKIPS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )


def test_not_run_is_its_own_outcome(tmp_path):
    (tmp_path / "tests").mkdir()
    for name in ("__init__.py", "outcomes.py", "conftest.py"):
        shutil.copy(TESTS / name, tmp_path / "tests" / name)
    (tmp_path / "tests" / "test_cases.py").write_text(CASES)

    relaxed = _pytest(tmp_path, strict=False)
    assert relaxed.returncode == 0, relaxed.stdout
    assert "1 passed, 1 skipped, 1 not run" in relaxed.stdout
    assert "NOT RUN tests/test_cases.py::test_needs_hardware: the CPU lacks the instruction" in relaxed.stdout

    strict = _pytest(tmp_path, strict=True)
    assert strict.returncode == 1, strict.stdout  # the skip fails; the NOT RUN does not
    assert "1 failed, 1 passed, 1 not run" in strict.stdout
    assert "FAILED tests/test_cases.py::test_needs_a_package" in strict.stdout
    assert "test_needs_hardware" not in strict.stdout.split("short test summary")[-1]
