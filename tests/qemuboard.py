"""The QEMU-emulated aarch64 board for tests: the cached image (built if missing: the real
mmdebstrap, ~10-15 min once), boards started with the real `up` and stopped with `down`, and a
snapshot of what the host has (mounts, binfmt entries, processes) to prove `down` left nothing."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

import pytest


def unavailable_reason() -> str | None:
    from edgeopt.toolkit.boards.qemu import host

    from edgeopt.errors import EdgeoptError

    try:
        host.require()
    except EdgeoptError as exc:
        return str(exc)
    return None


_image = None


def image():
    """The cached image; built now (and timed) if missing. Skips (a failure under
    EDGEOPT_STRICT_SKIPS=1) when the host cannot build it."""
    global _image
    if _image is None:
        reason = unavailable_reason()
        if reason:
            pytest.skip(f"QEMU board: {reason}")
        from edgeopt.toolkit.boards.qemu.build import build

        t = time.monotonic()
        _image, built = build()
        if built:
            print(f"\n[qemu] image built from scratch in {time.monotonic() - t:.0f} s")
    return _image


@contextlib.contextmanager
def config_dir(path: Path) -> Iterator[Path]:
    """`up` writes boards.toml and known_hosts into the config dir: a temporary one in tests."""
    old = os.environ.get("EDGEOPT_CONFIG_DIR")
    os.environ["EDGEOPT_CONFIG_DIR"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("EDGEOPT_CONFIG_DIR", None)
        else:
            os.environ["EDGEOPT_CONFIG_DIR"] = old


@contextlib.contextmanager
def running(mode: str, **kw) -> Iterator[dict]:
    from edgeopt.toolkit.boards.qemu.board import down, up

    image()
    t = time.monotonic()
    doc = up(mode, **kw)
    print(f"\n[qemu] {mode} mode up in {time.monotonic() - t:.1f} s (cpu {doc['cpu']}, port {doc['port']})")
    try:
        yield doc
    finally:
        down(mode)


def spec(mode: str, doc: dict):
    from edgeopt.toolkit.boards.qemu.board import spec_for

    return spec_for(mode, doc, image())


def host_snapshot() -> dict:
    """What a board could leave behind on the host."""
    from edgeopt.toolkit.boards.qemu import host

    mounts = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mounts.add(line.split()[4])
    binfmt = sorted(p.name for p in host.BINFMT_DIR.iterdir()) if host.binfmt_mounted() else None
    procs = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            root = os.readlink(p / "root")
        except OSError:
            continue
        if "qemu" in cmd or "sshd" in cmd or root != "/":
            procs[int(p.name)] = (cmd.strip(), root)
    return {"mounts": mounts, "binfmt": binfmt, "procs": procs}
