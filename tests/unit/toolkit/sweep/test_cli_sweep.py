"""`edgeopt sweep` without the optional extra: one line that says how to get it, exit code 10.
The missing package is made missing for real in a child interpreter (sys.modules['ray'] = None
makes `import ray` fail there, as an absent package would)."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import sys
sys.modules['ray'] = None
from edgeopt.toolkit.cli import main
sys.exit(main(['sweep', '--out', sys.argv[1]]))
"""


def test_without_ray_the_command_says_how_to_get_it(tmp_path):
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 10, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'edgeopt[sweep]'" in lines[0]
    assert not (tmp_path / "o").exists()


def test_bad_flags_are_usage_errors(tmp_path):
    from edgeopt.toolkit.cli import main

    assert main(["sweep", "--out", str(tmp_path / "o"), "--sparsity", "0.6"]) == 2
    assert main(["sweep", "--out", str(tmp_path / "o"), "--sparsity", "x"]) == 2
    assert not (tmp_path / "o").exists()
