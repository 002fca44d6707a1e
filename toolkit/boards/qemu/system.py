"""System mode: the image booted by qemu-system-aarch64 (-M virt, Cortex-A57 by default, TCG),
its sshd reached through a forwarded loopback port. -snapshot: the cached ext4 image is never
written; whatever the board stored is gone when it stops."""

from __future__ import annotations

import os
import signal
import time

from edgeopt.errors import BoardError

from . import host, state
from .build import Image

DEFAULT_CPU = "cortex-a57"  # boots in ~50 s; plain 'max' takes ~140 s
# Boot budget in the emulator's CPU time (host.cpu_seconds): ~100 s is a normal boot; a host under
# load stretches the wall time, not this. The wall cap only stops a VM that gets no CPU at all.
BOOT_CPU_S = 900
BOOT_WALL_CAP_S = 3600
MEMORY_MB = 2048


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def up(image: Image, port: int, cpu: str | None = None, smp: int | None = None) -> dict:
    cpu = cpu or DEFAULT_CPU
    smp = smp or min(2, os.cpu_count() or 1)
    rd = state.run_dir("system")
    rd.mkdir(parents=True, exist_ok=True)
    for f in ("qemu.pid", "console.log"):
        try:
            (rd / f).unlink()
        except FileNotFoundError:
            pass
    doc = {
        "mode": "system",
        "image": image.key,
        "port": port,
        "cpu": cpu,
        "smp": smp,
        "pid": None,
        "started": time.time(),
    }
    state.save("system", doc)
    cmd = [
        host.HOST_PACKAGES["qemu-system-arm"],
        "-M",
        "virt",
        "-cpu",
        cpu,
        "-smp",
        str(smp),
        "-m",
        str(MEMORY_MB),
        "-accel",
        "tcg,thread=multi",
        "-no-reboot",
        "-snapshot",
        "-kernel",
        str(image.kernel),
        "-initrd",
        str(image.initrd),
        "-append",
        "root=/dev/vda rw console=ttyAMA0 net.ifnames=0 quiet",
        "-drive",
        f"if=none,file={image.ext4},format=raw,id=hd0",
        "-device",
        "virtio-blk-pci,drive=hd0",
        "-netdev",
        f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=net0,romfile=",
        "-serial",
        f"file:{rd / 'console.log'}",
        "-monitor",
        "none",
        "-display",
        "none",
        "-daemonize",
        "-pidfile",
        str(rd / "qemu.pid"),
    ]
    host.run(cmd, timeout=60, what="qemu-system-aarch64")  # returns once the VM runs in the background
    try:
        doc["pid"] = int((rd / "qemu.pid").read_text().strip())
    except (OSError, ValueError):
        raise BoardError("qemu-system-aarch64 started but wrote no pid file") from None
    state.save("system", doc)
    deadline = time.monotonic() + BOOT_WALL_CAP_S
    used = 0.0
    while time.monotonic() < deadline and used < BOOT_CPU_S:
        if not _alive(doc["pid"]):
            break
        if host.ssh_ready(port):
            doc["boot_s"] = round(time.time() - doc["started"], 1)
            state.save("system", doc)
            return doc
        time.sleep(1)
        used = host.cpu_seconds(doc["pid"]) or used
    tail = (
        (rd / "console.log").read_text(errors="replace").strip().splitlines()[-1:]
        if (rd / "console.log").exists()
        else []
    )
    spent = f"{used:.0f} s of emulator CPU time, {time.time() - doc['started']:.0f} s"
    raise BoardError(
        f"the emulated board did not boot to a working sshd on 127.0.0.1:{port} in {spent}"
        + (f": {tail[0][:200]}" if tail else ""),
        hint=f"see {rd / 'console.log'}",
    )


def down(doc: dict) -> list[str]:
    pid = doc.get("pid")
    if not pid:
        try:
            pid = int((state.run_dir("system") / "qemu.pid").read_text().strip())
        except (OSError, ValueError):
            pid = None
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if not _alive(pid):
            break
        # only if that pid is still our qemu, not a reused number
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            break
        if b"qemu-system-aarch64" not in cmdline:
            break
        os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
    return [f"qemu-system-aarch64 (pid {pid}) is still running"] if _alive(pid) else []
