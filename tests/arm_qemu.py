"""Run a kernel built for an Arm core on this (x86) machine: cross-compiled for the core's
compile target, executed by the QEMU board image's own python3 and TVM runtime under user-mode
`qemu-aarch64 -cpu <core>` -- the way the instruction counter runs bundles
(edgeopt/toolkit/boards/qemu/count.py). The kernel tests use it for the ISAs the host CPU lacks, so
the Arm kernels are checked numerically here instead of being reported NOT RUN.

`missing(isa)` says why this machine cannot run them (no board image, no qemu-aarch64, no cross
compiler), None when it can; `run_on_core(isa, jobs)` runs a batch of kernels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

# the emulated core an Arm ISA's kernels run on: it must have the ISA's features
CORE = {"dotprod": "cortex-a76", "neon": "cortex-a72"}

_GUEST = """
import json, sys, numpy as np
from tvm import runtime
for i, n in enumerate(json.load(open(sys.argv[1]))):  # kernel i: k<i>.so on in<i>.npz
    d = np.load(sys.argv[2] + "/in%d.npz" % i)
    args = [runtime.tensor(d["a%d" % j]) for j in range(n)]
    runtime.load_module(sys.argv[2] + "/k%d.so" % i)["main"](*args)
    np.save(sys.argv[2] + "/out%d.npy" % i, args[-1].numpy())
"""


def missing(isa: str) -> str | None:
    """Why `isa`'s kernels cannot run under QEMU here, or None."""
    from edgeopt.compile.targets import CROSS_CC
    from edgeopt.toolkit.boards.qemu.build import find
    from edgeopt.toolkit.boards.qemu.count import QEMU_DYNAMIC

    if isa not in CORE:
        return f"no emulated core is known for the {isa} kernels"
    if not os.access(QEMU_DYNAMIC, os.X_OK):
        return f"{QEMU_DYNAMIC} is missing (apt-get install qemu-user)"
    if shutil.which(CROSS_CC) is None:
        return f"the cross compiler {CROSS_CC} is missing (apt-get install gcc-aarch64-linux-gnu)"
    if find() is None:
        return "the QEMU board image is not built (edgeopt board qemu build)"
    return None


def run_on_core(isa: str, jobs: dict) -> dict:
    """Build each job's PrimFunc for `isa`'s emulated core and call them all there, in one
    emulated process (starting Python and TVM's runtime under QEMU costs tens of seconds; the
    kernels themselves, milliseconds). `jobs`: key -> (func, arrays), the last array being the
    output, written in place. Returns key -> that output."""
    import tvm
    from edgeopt.compile import get_target
    from edgeopt.compile.targets import CROSS_CC
    from edgeopt.toolkit.boards.qemu.build import find
    from edgeopt.toolkit.boards.qemu.count import QEMU_DYNAMIC, VENV_SITE
    from tvm.support.cc import cross_compiler

    core = CORE[isa]
    rootfs = find().rootfs
    target = tvm.target.Target(get_target(core).tvm_target())
    link = cross_compiler(CROSS_CC)
    keys = list(jobs)
    with tempfile.TemporaryDirectory(prefix="edgeopt-armk-") as tmp:
        t = Path(tmp)
        for i, key in enumerate(keys):
            func, arrays = jobs[key]
            lib = tvm.compile(func, target=target)
            (lib.mod if hasattr(lib, "mod") else lib).export_library(str(t / f"k{i}.so"), fcompile=link)
            np.savez(t / f"in{i}.npz", **{f"a{j}": np.ascontiguousarray(a) for j, a in enumerate(arrays)})
        (t / "jobs.json").write_text(json.dumps([len(jobs[k][1]) for k in keys]))
        (t / "guest.py").write_text(_GUEST)
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(rootfs / VENV_SITE),
            "TVM_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        r = subprocess.run(
            [
                QEMU_DYNAMIC,
                "-cpu",
                core,
                "-L",
                str(rootfs),
                str(rootfs / "usr/bin/python3"),
                str(t / "guest.py"),
                str(t / "jobs.json"),
                str(t),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=1200,
        )
        assert r.returncode == 0, f"the kernels failed on the emulated {core}: {r.stderr.strip()[-500:]}"
        return {key: np.load(t / f"out{i}.npy") for i, key in enumerate(keys)}
