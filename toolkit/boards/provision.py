"""`edgeopt board setup`: install the agent's runtime on a board that has no internet.

The host downloads wheels for the board's architecture and Python (`pip download --platform`),
uploads them (content-addressed: a wheel already there is not sent again), and the board
installs them into `<root>/venv` with `pip install --no-index --find-links`. The agent then runs
with that venv's python."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgeopt.errors import BoardError, UsageError

from .config import cache_dir
from .deploy import Connection

RUNTIME = ["apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post1", "numpy", "ml_dtypes", "typing_extensions"]
ORT = ["onnxruntime"]
ARCHES = {"x86_64", "aarch64"}
PIP_TIMEOUT_S = 1800


def board_python(conn: Connection, python: str = "python3") -> tuple[str, str]:
    """(major.minor, full version) of the board's system Python."""
    script = "import sys; print('%d.%d' % sys.version_info[:2], '%d.%d.%d' % sys.version_info[:3])"
    code, out, err = conn.run(
        [python, "-c", script], timeout_s=conn.spec.timeout_for("version"), what=f"`{python}` (the board's Python)"
    )
    if code != 0 or not out.strip():
        raise BoardError(
            f"no working {python} on {conn.spec.address}: {(err or out).strip()[:200]}",
            hint="install Python 3.9 or newer on the board",
        )
    short, full = out.split()
    return short, full


def download_wheels(
    arch: str, py: str, packages: list[str], dest: Path | None = None, index_url: str | None = None
) -> Path:
    """pip download on the host for the board's platform; cached per (arch, Python)."""
    if arch not in ARCHES:
        raise UsageError(f"no wheels for board architecture {arch!r}", hint=f"supported: {', '.join(sorted(ARCHES))}")
    tag = py.replace(".", "")
    dest = dest or cache_dir() / "wheels" / f"{arch}-cp{tag}"
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "-q",
        "--only-binary=:all:",
        "--python-version",
        py,
        "--implementation",
        "cp",
        "--abi",
        f"cp{tag}",
        "--abi",
        "abi3",
        "--abi",
        "none",
        "-d",
        str(dest),
    ]
    for plat in ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014"):
        cmd += ["--platform", f"{plat}_{arch}"]
    cmd += ["--platform", "any"]
    if index_url:
        cmd += ["--index-url", index_url]
    r = subprocess.run(cmd + packages, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BoardError(
            f"pip download of the board runtime for {arch}/cp{tag} failed: {last}",
            hint="the host needs access to a package index (or --index-url), once; the board does not",
        )
    return dest


def setup(
    conn: Connection, *, with_ort: bool = False, wheels: Path | None = None, index_url: str | None = None, progress=None
) -> dict:
    say = progress or (lambda msg: None)
    arch = conn.arch()
    py, py_full = board_python(conn)
    if tuple(int(p) for p in py.split(".")) < (3, 9):
        raise BoardError(f"the board's Python is {py_full}; the agent needs 3.9 or newer")
    packages = RUNTIME + (ORT if with_ort else [])
    if wheels is None:
        say(f"downloading wheels for {arch}, Python {py}")
        wheels = download_wheels(arch, py, packages, index_url=index_url)
    files = sorted(p for p in wheels.iterdir() if p.suffix == ".whl")
    if not files:
        raise UsageError(f"no wheels in {wheels}")
    root = conn.root()
    remote_wheels = root / "wheels"
    remote = conn.remote_sha256([remote_wheels / f.name for f in files])
    from edgeopt.compile.bundle import sha256_file

    sent = []
    for f in files:
        if remote.get(str(remote_wheels / f.name)) != sha256_file(f):
            say(f"uploading {f.name}")
            conn.upload(f, remote_wheels / f.name)
            sent.append(f.name)
    venv = root / "venv"
    python = conn.venv_python()
    if conn.run(["test", "-x", str(python)], timeout_s=conn.spec.timeout_for("version"))[0] != 0:
        say("creating the venv")
        code, out, err = conn.run(
            ["python3", "-m", "venv", str(venv)],
            timeout_s=conn.spec.timeout_for("venv"),
            what="setup's `python3 -m venv`",
        )
        if code != 0:
            raise BoardError(
                f"`python3 -m venv` failed on {conn.spec.address}: {(err or out).strip().splitlines()[-1:]}",
                hint="install the board's venv module (Debian: apt-get install python3-venv)",
            )
    say("installing the runtime into the venv")
    code, out, err = conn.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "--no-index",
            "--find-links",
            str(remote_wheels),
            *packages,
        ],
        timeout_s=conn.spec.timeout_for("pip"),
        what="setup's `pip install`",
    )
    if code != 0:
        last = ((err or out).strip().splitlines() or ["(no output)"])[-1]
        raise BoardError(f"pip install on {conn.spec.address} failed: {last}")
    code, out, err = conn.run(
        [str(python), "-c", "import numpy, tvm; print(tvm.__version__, numpy.__version__)"],
        env={"TVM_USE_RUNTIME_LIB": "1"},
        timeout_s=conn.spec.timeout_for("import"),
        what="setup's import check",
    )
    if code != 0:
        raise BoardError(
            f"the runtime installed on {conn.spec.address} does not import: {(err.strip().splitlines() or [''])[-1]}"
        )
    tvm_version, numpy_version = out.split()[-2:]
    conn._python = str(python)
    return {
        "board": {"address": conn.spec.address, "arch": arch, "python": py_full},
        "venv": str(venv),
        "python": str(python),
        "packages": packages,
        "wheels_uploaded": sent,
        "wheels_total": len(files),
        "tvm": tvm_version,
        "numpy": numpy_version,
    }
