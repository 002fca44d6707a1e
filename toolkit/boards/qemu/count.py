"""Guest instructions per inference on an emulated Arm core: an Arm speed figure without Arm
hardware.

The image's own python3 runs under the dynamically linked `qemu-aarch64` (Debian's `qemu-user`;
the static binary cannot load plugins) with a small TCG plugin of ours (insn_count.c, built
here with gcc against `qemu-plugin.h` from Debian's qemu source package). The guest script loads
one engine (onnxruntime on an ONNX file, or a TVM bundle's model.so), runs `warmup` inferences,
marks the plugin's counter, runs `runs` inferences on one fixed input, marks again: the
difference over `runs` is the count per inference, with Python start-up, imports and model
loading outside the marks. Every engine runs on one thread. The counted call is each engine's
leanest from Python: TVM's `main(tensor)` with the input placed once and the output left in
TVM's host memory (the call the board agent times), onnxruntime's `run_with_iobinding` with the
input bound once and the output preallocated; copying outputs to numpy is outside the marks
(tvm_ffi's `.numpy()` alone cost ~50k instructions per call on cortex-a72). What stays inside
is each engine's own per-call work: a trivial one-op model (Relu on 1x28x28) counts 11.4k
instructions per call with TVM and 27.5k with onnxruntime on cortex-a72.

Limits (docs/benchmarks.md): an instruction count is not a time. It ignores what an instruction
costs on a real core (an sdot and an add count one each), caches, memory bandwidth and
out-of-order overlap; QEMU 7.2 has no Cortex-A55, so "cortex-a55" runs on the A76 (same Armv8.2
dot-product instructions, different micro-architecture). It is deterministic for a given binary,
input and core, which a wall time under emulation is not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from ..config import cache_dir
from .host import QemuHostError

QEMU_DYNAMIC = "/usr/bin/qemu-aarch64"
PLUGIN_SOURCE = Path(__file__).with_name("insn_count.c")
MAGIC = 0x45D6E0C7  # the plugin's marker: lseek(-1, MAGIC, 0)
VENV_SITE = "home/edgeopt/.edgeopt/venv/lib/python3.11/site-packages"
QEMU_SOURCE = "qemu"  # Debian source package holding include/qemu/qemu-plugin.h


class Engine(str, Enum):
    ort = "onnxruntime"
    tvm = "tvm"


def _plugin_dir() -> Path:
    return cache_dir() / "qemu" / "plugin"


def header_dir() -> Path | None:
    """Where qemu-plugin.h is: $EDGEOPT_QEMU_PLUGIN_INCLUDE, or what fetch_header() unpacked."""
    env = os.environ.get("EDGEOPT_QEMU_PLUGIN_INCLUDE")
    for d in ([Path(env)] if env else []) + [_plugin_dir() / "include"]:
        if (d / "qemu-plugin.h").is_file():
            return d
    return None


def fetch_header() -> Path:
    """qemu-plugin.h from Debian's qemu source package (`apt-get source`, with a deb-src entry
    made from this machine's own apt sources), unpacked into the cache. No Debian binary package
    ships the header."""
    if (d := header_dir()) is not None:
        return d
    src = Path("/etc/apt/sources.list.d/debian.sources")
    if not src.is_file():
        raise QemuHostError(
            "cannot find this machine's Debian apt sources to fetch qemu's plugin header",
            hint="set EDGEOPT_QEMU_PLUGIN_INCLUDE to a folder holding qemu-plugin.h",
        )
    work = Path(tempfile.mkdtemp(prefix="edgeopt-qemu-src-"))
    try:
        (work / "lists" / "partial").mkdir(parents=True)
        (work / "src.sources").write_text(src.read_text().replace("Types: deb\n", "Types: deb-src\n"))
        opts = [
            "-o",
            f"Dir::Etc::SourceList={work / 'src.sources'}",
            "-o",
            "Dir::Etc::SourceParts=/nonexistent",
            "-o",
            f"Dir::State::Lists={work / 'lists'}",
        ]
        ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "qemu-user"], capture_output=True, text=True).stdout
        pkg = f"{QEMU_SOURCE}={ver.split('+b')[0]}" if ver else QEMU_SOURCE
        for cmd in (["apt-get", *opts, "update"], ["apt-get", *opts, "source", "--download-only", pkg]):
            r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                raise QemuHostError(
                    f"fetching Debian's qemu source package failed: {r.stderr.strip()[-200:]}",
                    hint="set EDGEOPT_QEMU_PLUGIN_INCLUDE to a folder holding qemu-plugin.h",
                )
        orig = next(work.glob("qemu_*.orig.tar.*"))
        out = _plugin_dir() / "include"
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(orig) as tar:
            member = next(m for m in tar if m.name.endswith("include/qemu/qemu-plugin.h") and m.isfile())
            (out / "qemu-plugin.h").write_bytes(tar.extractfile(member).read())
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def plugin() -> Path:
    """The built plugin (rebuilt when its source changes)."""
    if not os.access(QEMU_DYNAMIC, os.X_OK):
        raise QemuHostError(
            "counting instructions needs the dynamically linked qemu-aarch64",
            hint="apt-get install --no-install-recommends qemu-user",
        )
    inc = fetch_header()
    import hashlib

    tag = hashlib.sha256(PLUGIN_SOURCE.read_bytes()).hexdigest()[:12]
    so = _plugin_dir() / f"libinsn_count-{tag}.so"
    if not so.is_file():
        so.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["gcc", "-shared", "-fPIC", "-O2", "-I", str(inc), "-o", str(so) + ".tmp", str(PLUGIN_SOURCE)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise QemuHostError(
                f"building the instruction-count plugin failed: {r.stderr.strip()[-300:]}", hint="apt-get install gcc"
            )
        os.replace(str(so) + ".tmp", so)
    return so


_GUEST = r"""
import os, sys, numpy as np
def mark():
    try:
        os.lseek(-1, {magic}, 0)
    except OSError:
        pass
engine, path, x_path, warmup, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
xs = np.load(x_path)  # [N, *input shape]: timed on the first, outputs kept for all
x = xs[0]
if engine == "onnxruntime":
    import onnxruntime as ort
    o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    i, y = s.get_inputs()[0], s.get_outputs()[0]
    # the leanest call onnxruntime's Python API has: input bound once, output preallocated
    b = s.io_binding()
    b.bind_cpu_input(i.name, x)
    out = np.zeros([d if isinstance(d, int) else 1 for d in y.shape], np.float32)
    b.bind_output(y.name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    run = lambda: s.run_with_iobinding(b)
    def outputs(xi):
        return s.run(None, {{i.name: xi}})[0]
else:
    import tvm
    from tvm import runtime
    from tvm.runtime import vm as tvm_vm
    dev = tvm.cpu()
    fn = tvm_vm.VirtualMachine(runtime.load_module(path), dev)["main"]
    t = runtime.tensor(x, dev)
    # the call the board agent times (board/agent/measure.py): input placed once, the output
    # left in TVM's (host) memory; copying it to numpy is outside the count
    run = lambda: fn(t)
    def outputs(xi):
        out = fn(runtime.tensor(xi, dev))
        return (out if hasattr(out, "numpy") else out[0]).numpy()
for _ in range(warmup):
    run()
mark()
for _ in range(runs):
    run()
mark()
ys = [outputs(xi) for xi in xs]
np.save(sys.argv[6], np.concatenate(ys))
"""


def _cpuinfo(rootfs: Path, cpu: str, env: dict) -> str:
    from . import user

    r = subprocess.run(
        [QEMU_DYNAMIC, "-cpu", cpu, "-L", str(rootfs), str(rootfs / "usr/bin/python3"), "-c", user._AUXV],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if r.returncode != 0:
        raise QemuHostError(
            f"cannot read the emulated {cpu}'s features: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
        )
    h1, h2 = (int(v) for v in r.stdout.split())
    feats = [n for i, n in enumerate(user.HWCAP) if h1 >> i & 1] + [n for i, n in enumerate(user.HWCAP2) if h2 >> i & 1]
    return user.cpuinfo(cpu, feats, 1)


@dataclass(frozen=True)
class Count:
    engine: str
    cpu: str
    per_inference: int
    runs: int
    output: "object"  # numpy array: the engine's outputs on every input, concatenated (parity checks)

    def to_json(self) -> dict:
        return {
            "engine": self.engine,
            "cpu": self.cpu,
            "instructions_per_inference": self.per_inference,
            "runs": self.runs,
        }


def count(
    *, rootfs: Path, cpu: str, engine: Engine, model: Path, x, warmup: int = 2, runs: int = 3, timeout: float = 1800
) -> Count:
    """Guest instructions per inference of `engine` running `model` (an .onnx for onnxruntime, a
    bundle's model.so for tvm) on the emulated `cpu`. `x`: [N, *input shape]; timed on x[0],
    the outputs for all N returned (in Count.output)."""
    import numpy as np

    so = plugin()
    with tempfile.TemporaryDirectory(prefix="edgeopt-count-") as tmp:
        t = Path(tmp)
        (t / "guest.py").write_text(_GUEST.format(magic=MAGIC))
        np.save(t / "x.npy", np.ascontiguousarray(x))
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(rootfs / VENV_SITE),
            "TVM_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "TVM_USE_RUNTIME_LIB": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        # onnxruntime's cpuinfo crashes on the host's x86 /proc/cpuinfo: in a private mount
        # namespace, the emulated core's own (as user mode's board has it) is bound over it
        (t / "cpuinfo").write_text(_cpuinfo(rootfs, cpu, env))
        cmd = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount --bind "$0" /proc/cpuinfo && exec "$@"',
            str(t / "cpuinfo"),
            QEMU_DYNAMIC,
            "-cpu",
            cpu,
            "-L",
            str(rootfs),
            "-plugin",
            f"{so},out={t / 'count.txt'}",
            str(rootfs / "usr/bin/python3"),
            str(t / "guest.py"),
            engine.value,
            str(Path(model).resolve()),
            str(t / "x.npy"),
            str(warmup),
            str(runs),
            str(t / "y.npy"),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        if r.returncode != 0:
            raise QemuHostError(
                f"the emulated {cpu} failed running {engine.value}: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
            )
        marks = [int(line.split()[1]) for line in (t / "count.txt").read_text().splitlines() if line.startswith("mark")]
        if len(marks) != 2:
            raise QemuHostError(f"the instruction-count plugin saw {len(marks)} markers, expected 2")
        return Count(
            engine=engine.value,
            cpu=cpu,
            per_inference=round((marks[1] - marks[0]) / runs),
            runs=runs,
            output=np.load(t / "y.npy"),
        )


def main() -> None:  # python -m edgeopt.toolkit.boards.qemu.count ENGINE MODEL X.npy --cpu CPU
    import argparse

    import numpy as np

    from .build import require_image

    ap = argparse.ArgumentParser(description="guest instructions per inference on an emulated core")
    ap.add_argument("engine", choices=[e.value for e in Engine])
    ap.add_argument("model", type=Path)
    ap.add_argument("x", type=Path)
    ap.add_argument("--cpu", default="cortex-a76")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    c = count(
        rootfs=require_image().rootfs, cpu=a.cpu, engine=Engine(a.engine), model=a.model, x=np.load(a.x), runs=a.runs
    )
    print(json.dumps(c.to_json()))


if __name__ == "__main__":
    main()


def for_bench(kind: str, bundle_dir: Path, x, *, baseline_onnx: Path | None = None) -> dict:
    """What `edgeopt bench` reports beside an emulated board's (marked) latency: the bundle's
    guest instructions per inference on the board's emulated core (and onnxruntime's on the
    bundle's ONNX with --baseline ort), counted here in user mode on the board's own image, one
    thread. Never raises: a count that cannot be made says why."""
    from . import state
    from .build import Image, images_dir

    mode = "system" if kind == "qemu-system" else "user"  # BoardSpec.kind: qemu-user / qemu-system
    doc = state.load(mode) or {}
    try:
        image = Image.load(images_dir() / doc["image"]) if doc.get("image") else None
        if image is None:
            return {"available": False, "reason": "the emulated board's image is not known"}
        # system mode's core (cortex-a57 by default) is counted in user mode on the same core
        cpu = doc.get("cpu") or "cortex-a72"
        out = {
            "available": True,
            "cpu": cpu,
            "method": "QEMU TCG plugin, user mode, 1 thread",
            "note": "guest instructions, not a time and not a hardware number",
            "tvm": count(
                rootfs=image.rootfs,
                cpu=cpu,
                engine=Engine.tvm,
                model=bundle_dir / "model.so",
                x=x[:1],
                warmup=1,
                runs=1,
            ).per_inference,
        }
        if baseline_onnx is not None:
            out["onnxruntime"] = count(
                rootfs=image.rootfs, cpu=cpu, engine=Engine.ort, model=baseline_onnx, x=x[:1], warmup=1, runs=1
            ).per_inference
        return out
    except (QemuHostError, OSError, subprocess.SubprocessError) as exc:
        return {"available": False, "reason": str(exc)}
