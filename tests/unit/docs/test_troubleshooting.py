"""docs/troubleshooting.md lists every error the tool can print, with its fix.

What "every error" means here, mechanically:
- every EdgeoptError subclass has a row in the table of error classes (with its exit code);
- every place in toolkit/, compile/ and board/ that builds one of those exceptions from a string
  literal or an f-string is found by parsing the source (ast), and the message's longest literal
  piece (the text between placeholders) appears in a troubleshooting row whose fix column is not
  empty;
- every failure kind the board agent reports (AgentFailure("kind", ...)) appears too.
A new `raise SomeError(f"...")` without a row fails this test and names the file and line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from edgeopt import errors

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "troubleshooting.md"
SOURCES = [ROOT / "toolkit", ROOT / "compile", ROOT / "board"]
MIN_PIECE = 6  # shorter literal pieces ("got ", ": ") say nothing on their own


def error_classes() -> dict[str, type]:
    out, todo = {}, [errors.EdgeoptError]
    while todo:
        c = todo.pop()
        out[c.__name__] = c
        todo.extend(c.__subclasses__())
    return out


def _pieces(node: ast.AST) -> list[str] | None:
    """The literal pieces of a message argument, or None if it is not a literal/f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _pieces(node.left), _pieces(node.right)
        if left is None and right is None:
            return None
        return (left or []) + (right or [])
    return None


def raise_sites() -> list[tuple[str, int, str, list[str] | None]]:
    """(file, line, class name, literal pieces) for every construction of an edgeopt error."""
    names = set(error_classes())
    sites = []
    for base in SOURCES:
        for path in sorted(base.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in names
                    and node.args
                ):
                    sites.append((str(path.relative_to(ROOT)), node.lineno, node.func.id, _pieces(node.args[0])))
    return sites


def agent_failure_kinds() -> set[str]:
    kinds = set()
    for path in (ROOT / "board" / "agent").glob("*.py"):
        kinds |= set(re.findall(r'AgentFailure\(\s*"([a-z_]+)"', path.read_text()))
    return kinds


def doc_rows() -> list[tuple[str, str]]:
    """(message column, fix column) of every table row in troubleshooting.md."""
    rows = []
    for line in DOC.read_text().splitlines():
        if line.startswith("|") and not set(line) <= set("|- :"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 2 and cells[0] not in ("message", "class", "kind"):
                rows.append((cells[0], cells[-1]))
    return rows


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("`", "").replace("\\|", "|")).strip()


def test_the_scan_finds_the_raise_sites():
    sites = raise_sites()
    assert len(sites) > 100  # the scan works: there are many
    assert any(cls == "HostKeyError" and "CHANGED" in "".join(p or []) for _, _, cls, p in sites)


def test_every_error_class_has_a_row_with_its_exit_code():
    text = DOC.read_text()
    missing = []
    for name, cls in sorted(error_classes().items()):
        m = re.search(rf"^\| `{name}` \| (\d+) \|(.+)\|\s*$", text, re.M)
        if not m or int(m.group(1)) != cls.exit_code or not m.group(2).strip():
            missing.append(f"{name} (exit {cls.exit_code})")
    assert not missing, f"docs/troubleshooting.md: no row `| `Class` | exit code | what |` for {missing}"


def test_every_message_is_documented_with_a_fix():
    rows = [(_norm(m), f) for m, f in doc_rows()]
    problems = []
    for file, line, cls, pieces in raise_sites():
        if pieces is None:
            problems.append(
                f"{file}:{line}: {cls}(...) with a message that is not a literal: document it and "
                "make it a literal or an f-string"
            )
            continue
        piece = max((_norm(p) for p in pieces), key=len, default="")
        if len(piece) < MIN_PIECE:
            problems.append(f"{file}:{line}: {cls} message has no literal piece of {MIN_PIECE}+ characters")
            continue
        hits = [f for m, f in rows if piece in m]
        if not hits:
            problems.append(f"{file}:{line}: {cls}: no row in docs/troubleshooting.md contains {piece!r}")
        elif not any(f.strip() for f in hits):
            problems.append(f"{file}:{line}: {cls}: the row for {piece!r} has no fix")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind", sorted(agent_failure_kinds()))
def test_every_agent_failure_kind_is_documented(kind):
    assert any(f"({kind})" in m and f.strip() for m, f in doc_rows()), kind
