"""`edgeopt board qemu build|up|down|status`: the emulated aarch64 board (docs/qemu.md)."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..boards.qemu import MODES
from .options import Json, emit, quiet_stdout, sub_app

app = sub_app("The QEMU-emulated aarch64 board: build its image, start and stop it.")


@app.command("build")
def build_cmd(
    mirror: Optional[str] = typer.Option(
        None, help="Debian mirror URI for the image [default: this machine's apt sources]"
    ),
    force: bool = typer.Option(False, "--force", help="rebuild even if the cached image is current"),
    as_json: Json = False,
) -> None:
    """Build the arm64 Debian bookworm image (OpenSSH, Python, the TVM runtime and onnxruntime
    in ~/.edgeopt/venv; kernel, initrd and ext4 image for system mode). Cached by recipe hash:
    a second build with the same recipe does nothing. Needs root; ~10-15 minutes the first time."""
    import time

    from ..boards.qemu.build import build

    t = time.monotonic()
    with quiet_stdout(as_json):
        image, built = build(mirror=mirror, force=force, progress=lambda m: print(m, file=sys.stderr))
    doc = {
        "image": image.key,
        "dir": str(image.dir),
        "built": built,
        "seconds": round(time.monotonic() - t, 1),
        "times": image.meta.get("times", {}),
        "host_keys": image.host_keys,
    }
    emit(
        doc,
        as_json,
        f"{'built' if built else 'cached'} image {image.key} in {image.dir}"
        + (f" ({doc['seconds']:.0f} s)" if built else ""),
    )


@app.command("up")
def up_cmd(
    mode: str = typer.Option(
        MODES[0],
        help="user (arm64 sshd under qemu-user in a chroot; fast) | system (qemu-system-aarch64; boots a kernel)",
    ),
    port: Optional[int] = typer.Option(None, help="loopback port for its SSH server [default: a free one]"),
    cpu: Optional[str] = typer.Option(
        None, help="emulated core [default: cortex-a72 in user mode, cortex-a57 in system mode]"
    ),
    as_json: Json = False,
) -> None:
    """Start the emulated board, record its host keys in the toolkit's known_hosts and write it
    to boards.toml as `qemu` (user mode) or `qemu-system` (system mode)."""
    from ..boards.qemu.board import up

    with quiet_stdout(as_json):
        doc = up(mode, port=port, cpu=cpu)
    emit(
        doc,
        as_json,
        f"board {doc['board']} up ({mode} mode, {doc['cpu']}) on 127.0.0.1:{doc['port']} "
        f"in {doc['start_s']:.1f} s; use --board {doc['board']}",
    )


@app.command("down")
def down_cmd(
    mode: Optional[str] = typer.Option(None, help="user | system [default: both]"),
    as_json: Json = False,
) -> None:
    """Stop the emulated board and remove everything `up` created: processes, mounts, the binfmt
    entry (if `up` registered it), its known_hosts lines and boards.toml table."""
    from ..boards.qemu.board import down

    with quiet_stdout(as_json):
        docs = [down(m) for m in ([mode] if mode else MODES)]
    emit(
        {"stopped": docs},
        as_json,
        "\n".join(f"{d['mode']} mode: {'stopped' if d['was_up'] else 'was not up'}" for d in docs),
    )


@app.command("status")
def status_cmd(as_json: Json = False) -> None:
    """Is the image built; which modes are up, on which port and core."""
    from ..boards.qemu.board import status
    from ..boards.qemu.build import find

    image = find()
    doc = {
        "image": {"key": image.key, "dir": str(image.dir), "built_at": image.meta["built_at"]} if image else None,
        "boards": status(),
    }
    lines = [f"image    {image.key} ({image.dir})" if image else "image    not built (edgeopt board qemu build)"]
    for b in doc["boards"]:
        lines.append(
            f"{b['mode']:<8} "
            + (
                f"up as --board {b['board']} on 127.0.0.1:{b['port']} ({b['cpu']}, pid {b['pid']})"
                if b["up"]
                else ("STALE: run `edgeopt board qemu down`" if b.get("stale") else "down")
            )
        )
    emit(doc, as_json, "\n".join(lines))
