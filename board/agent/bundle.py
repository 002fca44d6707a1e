"""Loading a bundle on the board: hashes and target are checked before anything runs."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import time

MANIFEST = "manifest.json"
LIBRARY = "model.so"
BUNDLE_SCHEMA = "edgeopt.bundle/1"
PLAIN_NAME = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]{0,127}")


class AgentFailure(Exception):
    """A failure the agent reports in its JSON (kind + message), exit code 1."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def plain_name(name) -> bool:
    """A file name inside the bundle folder: letters, digits, . _ + - (not leading a dot), at
    most 128; so no separator, no .., no control character. The host checks the same pattern
    before uploading (compile/bundle.py)."""
    return isinstance(name, str) and PLAIN_NAME.fullmatch(name) is not None


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(bundle_dir: str) -> dict:
    path = os.path.join(bundle_dir, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise AgentFailure("bundle_missing", f"no {MANIFEST} in {bundle_dir}") from None
    except ValueError as exc:
        raise AgentFailure("bundle_damaged", f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise AgentFailure("bundle_damaged", f"{path} is not a JSON object")
    if manifest.get("schema") != BUNDLE_SCHEMA:
        raise AgentFailure("bundle_schema", f"bundle schema {manifest.get('schema')!r}, agent reads {BUNDLE_SCHEMA!r}")
    return manifest


def verify(bundle_dir: str, manifest: dict) -> dict:
    """sha256 of every file as it is on this board; mismatch or wrong CPU is a failure."""
    actual = {}
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise AgentFailure("bundle_damaged", f"{MANIFEST} in {bundle_dir} has no files table")
    for name, meta in sorted(files.items()):
        if not plain_name(name):
            raise AgentFailure("bundle_unsafe_name", f"{MANIFEST} names {name!r}, not a plain file name; refused")
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            raise AgentFailure("bundle_damaged", f"{MANIFEST} entry {name!r} has no sha256")
    if LIBRARY not in files:
        raise AgentFailure("bundle_missing", f"{MANIFEST} in {bundle_dir} lists no {LIBRARY}: nothing to run")
    for name, meta in sorted(files.items()):
        path = os.path.join(bundle_dir, name)
        if os.path.islink(path):
            raise AgentFailure("bundle_damaged", f"bundle file {name} is a symlink on the board; refused")
        if not os.path.isfile(path):
            raise AgentFailure("bundle_missing", f"bundle file {name} is missing on the board")
        actual[name] = sha256_file(path)
        if actual[name] != meta["sha256"]:
            raise AgentFailure("bundle_damaged", f"bundle file {name} does not match its sha256 (damaged upload?)")
    target = manifest.get("target", {})
    arch = target.get("arch")
    if arch and arch != platform.machine():
        raise AgentFailure(
            "target_mismatch",
            f"bundle was built for {arch} (target {target.get('name')!r}) but this board is {platform.machine()}",
        )
    flags = cpu_flags()
    missing = sorted(set(target.get("required_cpu_flags", [])) - flags) if flags else []
    if missing:
        # running it would die with SIGILL: say which instructions are missing instead
        raise AgentFailure(
            "target_mismatch",
            f"bundle for target {target.get('name')!r} (mcpu {target.get('mcpu')}) needs CPU features this "
            f"board lacks: {', '.join(missing)}",
        )
    return actual


def cpu_flags() -> set:
    """/proc/cpuinfo's feature flags (x86 `flags`, Arm `Features`); empty if unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


class LoadedBundle:
    def __init__(self, bundle_dir: str) -> None:
        self.dir = bundle_dir
        self.manifest = read_manifest(bundle_dir)
        self.sha256 = verify(bundle_dir, self.manifest)
        self.input = self.manifest["inputs"][0]
        import tvm
        from tvm import runtime
        from tvm.runtime import vm as tvm_vm

        t0 = time.perf_counter()
        lib = runtime.load_module(os.path.join(bundle_dir, LIBRARY))
        self.dev = tvm.cpu()
        self.lib = lib
        self.vm = tvm_vm.VirtualMachine(lib, self.dev)
        self.fn = self.vm["main"]
        self.load_ms = (time.perf_counter() - t0) * 1e3
        self._tensor = runtime.tensor

    def to_device(self, x):
        return self._tensor(x, self.dev)

    def run(self, x):
        """One inference on a numpy batch-1 input; returns the first output as numpy."""
        out = self.fn(self._tensor(x, self.dev))
        return (out if hasattr(out, "numpy") else out[0]).numpy()
