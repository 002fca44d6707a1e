"""`edgeopt board qemu up|down|status`, and the `qemu` / `qemu-system` board names.

`up` starts the board, records the image's host keys in the toolkit's known_hosts and writes
its [boards.qemu] (or [boards.qemu-system]) table to boards.toml; `down` stops it and removes
all of that again. Naming `--board qemu` when it is not up starts it for that one command."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from typing import Iterator

from edgeopt.errors import BoardError, UsageError

from ..deploy import BoardSpec
from . import BOARD_NAMES, MODES, host, register, state, system, user
from .build import Image, images_dir, require_image

HOST = "127.0.0.1"
TARGET = "aarch64"  # what `edgeopt run --board qemu` compiles for
EMULATED_NOTE = (
    "emulated board (QEMU, TCG): latencies prove that the bundle runs and the measurement "
    "path works; they are not hardware numbers (emulated arithmetic is ~500-900x slower)"
)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}", hint="--mode user or --mode system")


def _require(mode: str) -> None:
    if mode == "user":
        host.require(packages=("qemu-user-static",), root=True)
    else:
        host.require(packages=("qemu-system-arm",), root=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def alive(doc: dict) -> bool:
    pid = doc.get("pid")
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def spec_for(mode: str, doc: dict, image: Image) -> BoardSpec:
    return BoardSpec(
        kind=f"qemu-{mode}",
        name=BOARD_NAMES[mode],
        host=HOST,
        port=doc["port"],
        user=image.user,
        identity_file=image.client_key,
        use_ssh_agent=False,
        target=TARGET,
        connect_timeout_s=30.0 if mode == "system" else 10.0,
    )


def up(mode: str, *, port: int | None = None, cpu: str | None = None, mirror: str | None = None) -> dict:
    _check_mode(mode)
    _require(mode)
    old = state.load(mode)
    if old and alive(old):
        raise BoardError(
            f"the emulated board ({mode} mode) is already up on {HOST}:{old['port']}",
            hint=f"use it as --board {BOARD_NAMES[mode]}, or `edgeopt board qemu down --mode {mode}` first",
        )
    if old:  # a crashed run: clean up what it left first
        down(mode)
    image = require_image(mirror)
    if port is not None and not _port_free(port):
        raise BoardError(f"port {port} on {HOST} is already in use", hint="pick another --port, or leave it out")
    port = port or _free_port()
    t = time.monotonic()
    try:
        doc = (user.up if mode == "user" else system.up)(image, port, cpu)
        register.record_host_keys(mode, HOST, port, image.host_keys)
        register.write_board(
            mode,
            BOARD_NAMES[mode],
            host=HOST,
            port=port,
            user=image.user,
            identity_file=image.client_key,
            target=TARGET,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            down(mode)
        raise
    doc["board"] = BOARD_NAMES[mode]
    doc["start_s"] = round(time.monotonic() - t, 2)
    state.save(mode, doc)
    return doc


def down(mode: str) -> dict:
    """Stop the board and remove everything `up` created. Safe to run when nothing is up."""
    _check_mode(mode)
    doc = state.load(mode)
    if doc is None:
        return {"mode": mode, "was_up": False}
    problems = (user.down if mode == "user" else system.down)(doc)
    register.forget_host_keys(mode)
    register.remove_board(mode)
    rd = state.run_dir(mode)
    if not host.mounts_under(rd):
        shutil.rmtree(rd, ignore_errors=True)
    else:
        problems.append(f"{rd} still has mounts; left in place")
    if problems:
        raise BoardError(
            f"the emulated board ({mode} mode) did not stop cleanly: {'; '.join(problems)}",
            hint="run `edgeopt board qemu down` again; see `edgeopt board qemu status`",
        )
    state.clear(mode)
    return {"mode": mode, "was_up": True}


def status() -> list[dict]:
    out = []
    for mode in MODES:
        doc = state.load(mode)
        if doc is None:
            out.append({"mode": mode, "up": False})
            continue
        ok = alive(doc)
        out.append(
            {
                "mode": mode,
                "up": ok,
                "stale": not ok,
                "board": BOARD_NAMES[mode],
                "port": doc.get("port"),
                "cpu": doc.get("cpu"),
                "pid": doc.get("pid"),
                "image": doc.get("image"),
                "mounts": host.mounts_under(state.run_dir(mode)) if mode == "user" else [],
            }
        )
    return out


def check(name: str) -> None:
    """Fail fast (before a long `edgeopt run`) if the board cannot be started."""
    mode = {v: k for k, v in BOARD_NAMES.items()}[name]
    doc = state.load(mode)
    if doc and alive(doc):
        return
    _require(mode)
    require_image()


@contextlib.contextmanager
def open_qemu(mode: str) -> Iterator[BoardSpec]:
    """The running board's spec; when it is not up, started for the duration and stopped after."""
    doc = state.load(mode)
    if doc and alive(doc):
        image = Image.load(images_dir() / doc["image"])
        yield spec_for(mode, doc, image)
        return
    doc = up(mode)
    try:
        yield spec_for(mode, doc, require_image())
    finally:
        down(mode)


def _kind(mode: str):
    @contextlib.contextmanager
    def opener(**_: object) -> Iterator[BoardSpec]:
        with open_qemu(mode) as spec:
            yield spec

    return opener


BOARD_KINDS = {BOARD_NAMES[m]: _kind(m) for m in MODES}
