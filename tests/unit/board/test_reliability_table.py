"""docs/reliability.md's table and tests/integration/test_faults.py agree, name for name: every
row names a test that exists, every test there has a row, and every row has its exit code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "reliability.md"
SUITE = ROOT / "tests" / "integration" / "test_faults.py"


def table_rows() -> list[list[str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 4 and cells[0] not in ("case", "---"):
            rows.append(cells)
    return rows


def suite_tests() -> set[str]:
    tree = ast.parse(SUITE.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_table_and_suite_agree():
    rows = table_rows()
    named = [re.fullmatch(r"`(test_\w+)`", r[3]) for r in rows]
    assert all(named), [r for r, m in zip(rows, named) if not m]
    names = [m.group(1) for m in named]
    assert len(names) == len(set(names)), "a test is named by two rows"
    assert set(names) == suite_tests(), set(names) ^ suite_tests()


def test_every_row_has_an_exit_code_and_a_behaviour():
    for case, behaviour, code, _ in table_rows():
        assert case and behaviour, case
        assert code in {"0", "6", "7", "8", "130"}, (case, code)
