"""User mode: the image's own arm64 OpenSSH server, run by qemu-user in a chroot.

`up` mounts, in <run>/root: an overlay of the cached rootfs (the image itself is never
written; the board's store lives in the overlay's upper layer, removed by `down`), then proc,
sys, /dev, /dev/pts, and a generated aarch64 /proc/cpuinfo over the host's (onnxruntime crashes
reading an x86 one; the agent reads the CPU's features there). QEMU_CPU picks the emulated core;
sshd passes it on to every session (SetEnv), and each aarch64 program exec'd there runs on it.
The cpuinfo's Features are what that core's HWCAPs say, read inside the emulator."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from edgeopt.errors import BoardError

from . import host, state
from .build import Image

DEFAULT_CPU = "cortex-a72"  # the default 'max' has SVE, and pip's numpy warns spuriously under it
START_TIMEOUT_S = 300  # emulated sshd; returns as soon as it answers: the limit only bounds a stuck start
# LLVM/compile target name -> the QEMU core that runs it (QEMU 7.2 has no Cortex-A55: the A76 is
# the closest core it has with the A55's Armv8.2 dot product)
TARGET_CPU = {
    "aarch64": "cortex-a53",
    "cortex-a55": "cortex-a76",
    "cortex-a72": "cortex-a72",
    "cortex-a76": "cortex-a76",
}
CPU_PART = {
    "cortex-a35": ("0x41", "0xd04"),
    "cortex-a53": ("0x41", "0xd03"),
    "cortex-a57": ("0x41", "0xd07"),
    "cortex-a72": ("0x41", "0xd08"),
    "cortex-a76": ("0x41", "0xd0b"),
    "neoverse-n1": ("0x41", "0xd0c"),
    "a64fx": ("0x46", "0x001"),
}

HWCAP = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
    "dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg"
).split()
HWCAP2 = (
    "dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm "
    "svebf16 i8mm bf16 dgh rng bti mte"
).split()
_AUXV = (
    "import ctypes; g = ctypes.CDLL(None).getauxval; g.restype = ctypes.c_ulong; "
    "g.argtypes = [ctypes.c_ulong]; print(g(16), g(26))"
)


def cpus() -> list[str]:
    """The cores this host's qemu-aarch64 knows."""
    try:
        out = subprocess.run(
            [host.HOST_PACKAGES["qemu-user-static"], "-cpu", "help"], capture_output=True, text=True, timeout=30
        ).stdout
    except OSError:
        return []
    return [w for line in out.splitlines()[1:] for w in line.split()]


def _features(root: Path, cpu: str) -> list[str]:
    out = subprocess.run(
        [host.sbin("chroot"), str(root), "/usr/bin/python3", "-c", _AUXV],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "QEMU_CPU": cpu},
    )
    if out.returncode != 0:
        raise BoardError(f"cannot read the emulated {cpu}'s features: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    h1, h2 = (int(x) for x in out.stdout.split())
    return [n for i, n in enumerate(HWCAP) if h1 >> i & 1] + [n for i, n in enumerate(HWCAP2) if h2 >> i & 1]


def cpuinfo(cpu: str, features: list[str], n: int) -> str:
    impl, part = CPU_PART.get(cpu, ("0x00", "0x000"))
    block = [
        f"model name\t: {cpu} (emulated: QEMU user mode)",
        "BogoMIPS\t: 100.00",
        f"Features\t: {' '.join(features)}",
        f"CPU implementer\t: {impl}",
        "CPU architecture: 8",
        "CPU variant\t: 0x0",
        f"CPU part\t: {part}",
        "CPU revision\t: 0",
    ]
    return "".join(f"processor\t: {i}\n" + "\n".join(block) + "\n\n" for i in range(n))


def up(image: Image, port: int, cpu: str | None = None) -> dict:
    cpu = cpu or DEFAULT_CPU
    known = cpus()
    if known and cpu not in known:
        raise BoardError(f"QEMU here does not know the core {cpu!r}", hint=f"known: {', '.join(known)}")
    rd = state.run_dir("user")
    root = rd / "root"
    doc = {
        "mode": "user",
        "image": image.key,
        "port": port,
        "cpu": cpu,
        "root": str(root),
        "mounts": [],
        "binfmt": {},
        "pid": None,
        "started": time.time(),
    }
    for sub in ("upper", "work", "root"):
        (rd / sub).mkdir(parents=True, exist_ok=True)
    state.save("user", doc)  # from here on, `down` can undo whatever was done
    doc["binfmt"] = host.ensure_binfmt()
    state.save("user", doc)

    def mount(args: list[str], where: Path) -> None:
        host.run([host.sbin("mount"), *args, str(where)], what=f"mounting {where}")
        doc["mounts"].append(str(where))
        state.save("user", doc)

    mount(
        ["-t", "overlay", "overlay", "-o", f"lowerdir={image.rootfs},upperdir={rd / 'upper'},workdir={rd / 'work'}"],
        root,
    )
    mount(["-t", "proc", "proc"], root / "proc")
    mount(["-t", "sysfs", "sysfs"], root / "sys")
    mount(["--bind", "/dev"], root / "dev")
    mount(["--bind", "/dev/pts"], root / "dev/pts")
    (rd / "cpuinfo").write_text(cpuinfo(cpu, _features(root, cpu), os.cpu_count() or 1))
    mount(["--bind", str(rd / "cpuinfo")], root / "proc/cpuinfo")
    (root / "run/sshd").mkdir(parents=True, exist_ok=True)

    log = open(rd / "sshd.log", "ab")
    proc = subprocess.Popen(
        [
            host.sbin("chroot"),
            str(root),
            "/usr/sbin/sshd",
            "-D",
            "-e",
            "-p",
            str(port),
            "-o",
            "ListenAddress=127.0.0.1",
            "-o",
            "PidFile=none",
            "-o",
            f"SetEnv=QEMU_CPU={cpu}",
            "-o",
            "UsePAM=no",
            "-o",
            "PasswordAuthentication=no",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "QEMU_CPU": cpu, "LANG": "C.UTF-8"},
    )
    log.close()
    doc["pid"] = proc.pid
    state.save("user", doc)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if host.ssh_ready(port, connect_timeout=2):
            return doc
        time.sleep(0.2)
    tail = (rd / "sshd.log").read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
    raise BoardError(
        f"the emulated board's sshd did not come up on 127.0.0.1:{port}: {tail[0]}",
        hint="is the port free? see " + str(rd / "sshd.log"),
    )


def processes(root: str) -> list[int]:
    """Every process whose root directory is the board's chroot (sshd, sessions, agents)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "root") == root:
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def down(doc: dict) -> list[str]:
    """Stop everything `up` started and undo its mounts; returns problems (empty = clean)."""
    problems = []
    root = doc["root"]
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        pids = processes(root)
        if doc.get("pid"):
            try:
                os.kill(doc["pid"], 0)
                pids.append(doc["pid"])
            except OSError:
                pass
        if not pids:
            break
        for pid in set(pids):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and processes(root):
            time.sleep(0.1)
        if doc.get("pid"):
            try:  # reap it if it is our child (the same Python process ran `up`)
                os.waitpid(doc["pid"], os.WNOHANG)
            except OSError:
                pass
    if processes(root):
        problems.append(f"processes still running in {root}: {processes(root)}")
    for mp in host.mounts_under(Path(root)):
        r = subprocess.run([host.sbin("umount"), mp], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"cannot unmount {mp}: {r.stderr.strip()}")
    host.release_binfmt(doc.get("binfmt", {}))
    return problems
