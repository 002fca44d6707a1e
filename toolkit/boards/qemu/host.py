"""What the host needs for the emulated board (root, packages, binfmt_misc), and the binfmt
registration that `build` and user mode rely on: registered only if missing, and removed
again only by whoever registered it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from edgeopt.errors import BoardError

# Debian package -> a file it installs that we use
HOST_PACKAGES = {
    "qemu-user-static": "/usr/bin/qemu-aarch64-static",
    "qemu-system-arm": "/usr/bin/qemu-system-aarch64",
    "mmdebstrap": "/usr/bin/mmdebstrap",
    "arch-test": "/usr/bin/arch-test",
}
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_NAME = "qemu-aarch64"
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")


class QemuHostError(BoardError):
    """The host cannot build or run the emulated board (not root, a package missing)."""


def require(*, packages: tuple[str, ...] = tuple(HOST_PACKAGES), root: bool = True) -> None:
    """One clear error naming everything missing."""
    missing = [p for p in packages if not os.access(HOST_PACKAGES[p], os.X_OK)]
    problems = []
    if root and os.geteuid() != 0:
        problems.append("root (chroot, mounts and binfmt_misc need it)")
    if missing:
        problems.append("the host package(s) " + " ".join(missing))
    if problems:
        fixes = ([f"apt-get install --no-install-recommends {' '.join(missing)}"] if missing else []) + (
            ["run as root (sudo)"] if root and os.geteuid() != 0 else []
        )
        raise QemuHostError("the emulated aarch64 board needs " + " and ".join(problems), hint="; ".join(fixes))


def run(
    cmd: list[str],
    *,
    timeout: float = 600,
    what: str | None = None,
    env: dict | None = None,
    log: Path | None = None,
    inherit: bool = True,
) -> str:
    """Run a host command; a failure is one BoardError with the command's first error line
    (apt's and mmdebstrap's `E: ...`) or its last line. With `log`, output streams there."""
    try:
        if log is not None:
            with open(log, "a") as f:
                f.write(f"$ {' '.join(cmd)}\n")
                f.flush()
                r = subprocess.run(
                    cmd,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                    env=None if env is None else ({**os.environ, **env} if inherit else env),
                )
            text = log.read_text(errors="replace")
            text = text[text.rindex("$ ") :]
        else:
            r = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=None if env is None else ({**os.environ, **env} if inherit else env),
            )
            text = r.stderr or r.stdout
    except subprocess.TimeoutExpired:
        raise BoardError(
            f"{what or cmd[0]} did not finish in {timeout:.0f} s" + (f" (full log: {log})" if log else "")
        ) from None
    except FileNotFoundError:
        raise QemuHostError(f"{cmd[0]} is not installed") from None
    if r.returncode != 0:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("E: ") and "failed to run" not in line]
        last = (errors or lines or [f"exit {r.returncode}"])[0 if errors else -1]
        raise BoardError(f"{what or ' '.join(cmd[:2])} failed: {last}" + (f" (full log: {log})" if log else ""))
    return r.stdout if log is None else ""


def binfmt_mounted() -> bool:
    return (BINFMT_DIR / "register").exists()


def binfmt_registered() -> bool:
    return (BINFMT_DIR / BINFMT_NAME).exists()


def ensure_binfmt() -> dict:
    """Make aarch64 binaries run through qemu-aarch64-static (flag F, so inside a chroot too).
    Returns what *we* did, for `release_binfmt`."""
    did = {"mounted": False, "registered": False}
    if not binfmt_mounted():
        run([sbin("mount"), "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], what="mounting binfmt_misc")
        did["mounted"] = True
    if not binfmt_registered():
        if not BINFMT_CONF.is_file():
            raise QemuHostError(f"{BINFMT_CONF} is missing", hint="apt-get install qemu-user-static")
        try:
            (BINFMT_DIR / "register").write_text(BINFMT_CONF.read_text().strip() + "\n")
        except OSError as exc:
            raise QemuHostError(
                f"cannot register the aarch64 binfmt handler: {exc}",
                hint="this needs root on the host, outside an unprivileged container",
            ) from None
        did["registered"] = True
    return did


def release_binfmt(did: dict) -> None:
    """Undo exactly what ensure_binfmt did, nothing more."""
    if did.get("registered") and binfmt_registered():
        try:
            (BINFMT_DIR / BINFMT_NAME).write_text("-1\n")
        except OSError:
            pass
    if (
        did.get("mounted")
        and binfmt_mounted()
        and not any(p.name not in ("register", "status") for p in BINFMT_DIR.iterdir())
    ):
        subprocess.run([sbin("umount"), str(BINFMT_DIR)], capture_output=True)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (from /proc/self/mountinfo), deepest first."""
    base = str(path.resolve())
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == base or mp.startswith(base + "/"):
                out.append(mp)
    return sorted(out, key=lambda m: (m.count("/"), m), reverse=True)


def sbin(name: str) -> str:
    """A system tool by absolute path: a user's PATH (pyenv, venvs) may lack /usr/sbin, and a
    child given its own environment looks its program up in that environment's PATH."""
    return (
        shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"]))
        or name
    )


def ssh_ready(port: int, *, connect_timeout: float = 3) -> bool:
    """sshd's banner on 127.0.0.1:port, not just something (slirp, a starting qemu) accepting the connection."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=connect_timeout) as s:
            s.settimeout(5)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used, or None when it is gone. Waits for an emulated
    board are budgeted in this, not wall time: a loaded host slows the guest, not its work."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
