"""A real OpenSSH server (Debian's openssh-server) as a board: a peer no one here wrote.

Started as `/usr/sbin/sshd -D -e -f <own config> -p <free loopback port>` with its own host key,
an authorized_keys holding a throw-away client key, `StrictModes no`, `ListenAddress 127.0.0.1`
and its PidFile in a temporary directory. It logs in the user running the tests; the board's
store lives under the temporary directory (an absolute `remote_root`), never in the real home.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
START_TIMEOUT_S = 120  # returns as soon as it answers; generous so a loaded host cannot break it


def unavailable_reason() -> str | None:
    """Why an OpenSSH board cannot be started here, or None. Never raises."""
    try:
        if not os.access(SSHD, os.X_OK):
            return f"{SSHD} not installed (apt-get install openssh-server)"
        r = subprocess.run([SSHD, "-V"], capture_output=True, text=True, timeout=10)
        if "OpenSSH" not in (r.stderr + r.stdout):
            return f"{SSHD} -V does not say OpenSSH: {(r.stderr or r.stdout).strip()[:100]}"
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            try:
                os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
            except OSError as exc:
                return f"cannot create sshd's privilege separation directory /run/sshd: {exc}"
        import asyncssh  # noqa: F401  (writes the keys)
    except Exception as exc:  # the check itself must never raise
        return f"cannot check for sshd: {type(exc).__name__}: {exc}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_key(path: Path) -> str:
    """A new ed25519 private key at `path`; returns its public key line."""
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path), format_name="openssh")
    os.chmod(path, 0o600)
    return key.export_public_key("openssh").decode().strip()


class OpenSSHBoard:
    kind = "openssh"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="edgeopt-sshd-"))
        self.home = self.dir / "home"  # where the board's store is (remote_root is absolute)
        self.host = "127.0.0.1"
        self.user = getpass.getuser()
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def remote_root(self) -> str:
        return str(self.home / ".edgeopt")

    def start(self) -> "OpenSSHBoard":
        self.home.mkdir(parents=True, exist_ok=True)
        host_pub = write_key(self.host_key)
        (self.dir / "authorized_keys").write_text(write_key(self.client_key) + "\n")
        last_err = ""
        for _ in range(3):  # a free port can be taken between the check and sshd's bind
            self.port = _free_port()
            config = self.dir / "sshd_config"
            config.write_text(
                "\n".join(
                    [
                        "ListenAddress 127.0.0.1",
                        f"HostKey {self.host_key}",
                        f"PidFile {self.dir / 'sshd.pid'}",
                        f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                        "StrictModes no",
                        "PubkeyAuthentication yes",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        "PermitRootLogin prohibit-password",
                        "UsePAM no",
                        f"AllowUsers {self.user}",
                        "Subsystem sftp internal-sftp",
                        "LogLevel ERROR",
                        "",
                    ]
                )
            )
            log = open(self.dir / "sshd.log", "wb")
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config), "-p", str(self.port)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection((self.host, self.port), timeout=1) as s:
                        if s.recv(64).startswith(b"SSH-"):
                            self.known_hosts.write_text(f"[{self.host}]:{self.port} {host_pub}\n")
                            return self
                except OSError:
                    time.sleep(0.05)
            last_err = (self.dir / "sshd.log").read_text(errors="replace")[-500:]
            self._kill()
        self.stop()
        raise RuntimeError(f"sshd did not start: {last_err}")

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "OpenSSHBoard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
