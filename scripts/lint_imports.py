"""Run import-linter on the `edgeopt` namespace (contracts: [tool.importlinter] in pyproject.toml).

The repository keeps toolkit/, compile/ and board/ at its top and installs them as edgeopt.toolkit,
edgeopt.compile, edgeopt.board (package-dir mapping); grimp, import-linter's graph builder, only
walks the folder of a top-level package. So this lays the namespace out as one folder of symlinks
in a temporary directory and runs `lint-imports` from there. Exit status: lint-imports'."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = {"toolkit": "toolkit", "compile": "compile", "board": "board"}  # edgeopt.<name> -> folder


def layout(dest: Path) -> Path:
    pkg = dest / "edgeopt"
    pkg.mkdir()
    for f in (ROOT / "edgeopt").iterdir():
        if f.suffix == ".py":
            (pkg / f.name).symlink_to(f)
    for name, folder in PARTS.items():
        (pkg / name).symlink_to(ROOT / folder, target_is_directory=True)
    return dest


def main() -> int:
    lint = Path(sys.executable).with_name("lint-imports")
    with tempfile.TemporaryDirectory(prefix="edgeopt-imports.") as tmp:
        # run from the temporary folder: it comes first on sys.path, before the editable install
        env = {**os.environ, "PYTHONPATH": ""}
        return subprocess.run(
            [str(lint), "--no-cache", str(ROOT / "pyproject.toml")], cwd=layout(Path(tmp)), env=env
        ).returncode


if __name__ == "__main__":
    sys.exit(main())
