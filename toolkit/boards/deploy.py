"""Talking to a board over SSH (paramiko): upload the agent and a bundle by SFTP into a
content-addressed store, run agent verbs, parse their JSON. The only module that imports paramiko."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import os
import select
import shlex
import signal
import socket
import stat
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import paramiko
from edgeopt.compile.bundle import Bundle, sha256_file

from edgeopt.errors import (
    AgentError,
    BoardConnectionLostError,
    BoardError,
    BoardOutputError,
    BoardTimeoutError,
    BoardUnreachableError,
    BundleError,
    HostKeyError,
)

from .config import toolkit_known_hosts, user_known_hosts, user_ssh_config

log = logging.getLogger("edgeopt.deploy")
# paramiko logs failures (with tracebacks) that we turn into one clear error of our own
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

AGENT_SCHEMA = "edgeopt.agent/1"
REMOTE_ROOT = PurePosixPath(".edgeopt")  # relative to the login directory, as SFTP and exec both see it
AGENT_SOURCE = Path(__file__).resolve().parents[2] / "board"  # toolkit/boards/deploy.py -> board/
# what the agent must never import on a board (it reports every top-level module it imported)
# (the tests check the same list: tests/unit/board, tests/integration)
HOST_ONLY_MODULES = frozenset({"torch", "onnx", "paramiko", "asyncssh", "sklearn", "edgeopt", "toolkit", "compile"})

# What the host reads of a board command's output at most (docs/reliability.md); past either cap
# the command is stopped. The agent's JSON is a few KB, 200 kept samples a few more.
STDOUT_CAP_BYTES = 16 << 20
STDERR_CAP_BYTES = 1 << 20
STDERR_KEEP_BYTES = 64 << 10  # the tail kept for the error message
# Timeouts (seconds) of the agent's verbs when none is set; an emulated board's are multiplied.
DEFAULT_TIMEOUT_S = 600.0
# setup's steps too: an emulated board's pip install of TVM takes minutes even at these sizes
VERB_TIMEOUT_S = {"version": 120.0, "info": 300.0, "venv": 600.0, "pip": 1800.0, "import": 600.0}
EMULATED_TIMEOUT_SCALE = 10.0  # QEMU arithmetic is 500-900x slower; its verbs are small on purpose
TIMEOUT_ENV = "EDGEOPT_BOARD_TIMEOUT"
TIMEOUT_HINT = (
    f"set a longer one with --timeout S, `timeout = S` in boards.toml or {TIMEOUT_ENV}=S; or check the board's load"
)
TMP_LIFETIME_TIMEOUTS = 2  # a run's temporary folder outlives it by this many command timeouts at most
STOP_GRACE_S = 2  # SIGTERM, then SIGKILL this much later
# Every command runs under this POSIX sh wrapper. sshd starts a command without a terminal in a
# session (and process group) of its own; when the channel closes (done, timed out, Ctrl-C, the
# connection dropped) the watchdog reads EOF on stdin and stops the whole group, so no process of
# ours outlives its session. The command's exit code passes through (128+N: killed by signal N).
WATCHDOG = (
    'exec 3<&0 </dev/null; "$@" 3<&- & p=$!; '
    "( trap '' TERM; while read -r _ <&3; do :; done; kill -s TERM 0; sleep %d; kill -s KILL 0 ) "
    ">/dev/null 2>&1 & w=$!; exec 3<&-; wait $p; rc=$?; kill -s KILL $w 2>/dev/null; exit $rc"
) % STOP_GRACE_S
# The agent runs isolated (-I: no PYTHON* variables, no user site, neither the working nor the
# agent's folder on sys.path; -B: no .pyc written): only the package `board` is loaded from the
# agent's folder, so a stray numpy.py dropped next to it is never imported.
AGENT_BOOT = (
    "import sys, runpy, importlib.util as u; d = sys.argv.pop(1) + '/board'; "
    "s = u.spec_from_file_location('board', d + '/__init__.py', submodule_search_locations=[d]); "
    "m = u.module_from_spec(s); sys.modules['board'] = m; s.loader.exec_module(m); "
    "sys.argv[0] = 'board.agent'; runpy.run_module('board.agent', run_name='__main__', alter_sys=True)"
)


@dataclass(frozen=True)
class BoardSpec:
    """How to reach a board. No passwords: key files or an SSH agent only."""

    kind: str
    host: str
    port: int = 22
    user: str | None = None
    identity_file: Path | None = None
    # An explicit known_hosts file, read and (with trust_new_host) written. None: the user's
    # ~/.ssh/known_hosts plus the toolkit's own (keys recorded by --trust-new-host go there).
    known_hosts: Path | None = None
    python: str | None = None  # None: the provisioned venv's python if there, else python3
    trust_new_host: bool = False
    use_ssh_agent: bool = True
    connect_timeout_s: float = 10.0
    # None: each agent verb's default (VERB_TIMEOUT_S, DEFAULT_TIMEOUT_S; scaled when emulated)
    command_timeout_s: float | None = None
    # a named identity_file is the only key offered (OpenSSH's IdentitiesOnly); False: agent keys too
    identities_only: bool = True
    env: dict[str, str] = field(default_factory=dict)
    name: str | None = None  # the name the user gave (boards.toml entry, user@host, local)
    target: str | None = None  # the compile target boards.toml names for it
    remote_root: str = str(REMOTE_ROOT)  # relative to the login directory, or absolute
    connect_retries: int = 3  # transient failures only (refused, reset, timed out)
    retry_backoff_s: float = 0.5  # doubled after every retry

    @property
    def address(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    @property
    def host_key_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def emulated(self) -> bool:
        return self.kind.startswith("qemu")

    def timeout_for(self, verb: str | None = None) -> float:
        """The set timeout, else the verb's default (an emulated board's multiplied)."""
        if self.command_timeout_s is not None:
            return self.command_timeout_s
        base = VERB_TIMEOUT_S.get(verb or "", DEFAULT_TIMEOUT_S)
        return base * (EMULATED_TIMEOUT_SCALE if self.emulated else 1.0)


def _watched(argv: list[str], env: dict[str, str] | None) -> str:
    """The shell command that runs `argv` (with `env`) under WATCHDOG, every word quoted."""
    words = [f"{k}={v}" for k, v in (env or {}).items()]
    inner = (["env", *words] if words else []) + list(argv)
    return " ".join(shlex.quote(w) for w in ["sh", "-c", WATCHDOG, "sh", *inner])


def signal_name(code: int) -> str | None:
    """'SIGSEGV' for a shell's 139 (128 + signal number), else None."""
    if 128 < code < 128 + 65:
        try:
            return signal.Signals(code - 128).name
        except ValueError:
            return None
    return None


def describe_exit(code: int) -> str:
    sig = signal_name(code)
    if sig:
        return f"was killed by {sig} (exit {code})"
    if code == -1:
        return "ended without an exit status"
    return f"exited {code}"


def apply_ssh_config(
    spec: BoardSpec, *, explicit_port: bool, explicit_user: bool, config_path: Path | None = None
) -> BoardSpec:
    """HostName, User, Port and IdentityFile from ~/.ssh/config; what the user typed wins."""
    path = config_path or user_ssh_config()
    if not path.is_file():
        return spec
    try:
        cfg = paramiko.SSHConfig.from_path(str(path)).lookup(spec.host)
    except Exception as exc:  # a broken ssh config must not be a traceback
        raise BoardError(f"cannot read {path}: {exc}") from None
    changes: dict = {}
    if cfg.get("hostname") and cfg["hostname"] != spec.host:
        changes["host"] = cfg["hostname"]
    if not explicit_user and cfg.get("user") and spec.user is None:
        changes["user"] = cfg["user"]
    if not explicit_port and cfg.get("port"):
        changes["port"] = int(cfg["port"])
    if spec.identity_file is None and cfg.get("identityfile"):
        for f in cfg["identityfile"]:
            if Path(f).expanduser().is_file():
                changes["identity_file"] = Path(f).expanduser()
                break
    return dataclasses.replace(spec, **changes) if changes else spec


def agent_files() -> list[Path]:
    """The files that make up the agent package, relative to the `board/` parent."""
    files = [AGENT_SOURCE / "__init__.py"]
    files += sorted((AGENT_SOURCE / "agent").glob("*.py"))
    return files


def agent_digest() -> str:
    """The digest the uploaded agent reports for itself (board/agent/version.py)."""
    from edgeopt.board.agent.version import digest

    return digest([str(f) for f in agent_files()], str(AGENT_SOURCE.parent))


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class _UnknownHostKey(Exception):
    def __init__(self, name: str, key: paramiko.PKey) -> None:
        super().__init__(name)
        self.name = name
        self.key = key


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Unknown host: refused, unless the user asked to trust it; then its key is recorded in
    `record_to` (appended, never rewritten). A *changed* key never reaches this policy:
    paramiko raises BadHostKeyException for it."""

    def __init__(self, trust: bool, record_to: Path) -> None:
        self.trust = trust
        self.record_to = record_to
        self.recorded: str | None = None

    def missing_host_key(self, client, hostname, key) -> None:
        if not self.trust:
            raise _UnknownHostKey(hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.record_to.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.record_to, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        self.recorded = f"{hostname} {key.get_name()} {fingerprint(key)}"
        log.info(
            "recorded the host key of %s (%s %s) in %s", hostname, key.get_name(), fingerprint(key), self.record_to
        )


def _close_quietly(chan) -> None:
    """Close a channel (the watchdog on the board sees EOF and stops the command); a dead
    connection must not hide the error that is already on its way."""
    try:
        chan.shutdown_write()
    except Exception:
        pass
    try:
        chan.close()
    except Exception:
        pass


def _is_transient(exc: BaseException) -> bool:
    """Worth another try: nothing listening yet, a reset, a timeout, a dropped banner. Never an
    authentication or host key failure, nor a name that does not resolve."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return all(
            isinstance(e, (ConnectionRefusedError, ConnectionResetError, TimeoutError, socket.timeout))
            for e in exc.errors.values()
        )
    if isinstance(
        exc,
        (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError, TimeoutError, socket.timeout, EOFError),
    ):
        return True
    if isinstance(exc, _SilentPeer):
        return True
    if isinstance(exc, paramiko.SSHException) and not isinstance(
        exc, (paramiko.AuthenticationException, paramiko.BadHostKeyException)
    ):
        text = str(exc)
        return "banner" in text or "reset" in text.lower() or "EOF" in text
    return False


class _SilentPeer(Exception):
    """TCP connected, but no SSH banner came in time (paramiko then reports 'No existing session')."""


class Connection:
    """An open SSH connection to one board; use as a context manager."""

    def __init__(self, spec: BoardSpec) -> None:
        self.spec = spec
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._arch: str | None = None
        self._python: str | None = None
        self.attempts = 0  # connection attempts made (retries included)
        self.uploads = 0  # files sent over SFTP on this connection
        self.uploaded_bytes = 0
        self.recorded_host_key: str | None = None

    # -- connecting -------------------------------------------------------------------------
    def __enter__(self) -> "Connection":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def known_hosts_files(self) -> list[Path]:
        if self.spec.known_hosts is not None:
            return [self.spec.known_hosts]
        return [user_known_hosts(), toolkit_known_hosts()]

    @property
    def record_to(self) -> Path:
        return self.spec.known_hosts if self.spec.known_hosts is not None else toolkit_known_hosts()

    def connect(self) -> None:
        spec = self.spec
        delay = spec.retry_backoff_s
        for attempt in range(spec.connect_retries + 1):
            self.attempts += 1
            try:
                self._client = self._connect_once()
                return
            except BaseException as exc:
                if not _is_transient(exc) or attempt == spec.connect_retries:
                    raise self._error(exc) from None
                log.info("SSH to %s: %s; retrying in %.1f s", spec.address, exc, delay)
                time.sleep(delay)
                delay *= 2

    def _connect_once(self) -> paramiko.SSHClient:
        spec = self.spec
        client = paramiko.SSHClient()
        for f in self.known_hosts_files:
            if f.is_file():
                try:
                    client.load_system_host_keys(str(f))
                except (OSError, paramiko.SSHException) as exc:
                    client.close()
                    raise BoardError(f"cannot read known_hosts file {f}: {exc}") from None
        policy = _HostKeyPolicy(spec.trust_new_host, self.record_to)
        client.set_missing_host_key_policy(policy)
        # a named key is the only one offered (IdentitiesOnly), unless asked otherwise
        others = spec.use_ssh_agent and (spec.identity_file is None or not spec.identities_only)
        try:
            client.connect(
                spec.host,
                port=spec.port,
                username=spec.user,
                key_filename=str(spec.identity_file) if spec.identity_file else None,
                allow_agent=others,
                look_for_keys=others,
                timeout=spec.connect_timeout_s,
                banner_timeout=spec.connect_timeout_s,
                auth_timeout=spec.connect_timeout_s,
                channel_timeout=spec.connect_timeout_s,
                password=None,
            )
        except BaseException as exc:
            transport = client.get_transport()
            banner = transport is not None and getattr(transport, "remote_version", "") == ""
            client.close()
            if (
                isinstance(exc, (paramiko.SSHException, EOFError, socket.timeout, TimeoutError))
                and banner
                and not isinstance(exc, (paramiko.AuthenticationException, paramiko.BadHostKeyException))
            ):
                raise _SilentPeer(str(exc)) from None
            raise
        self.recorded_host_key = policy.recorded
        return client

    def _error(self, exc: BaseException) -> BaseException:
        spec = self.spec
        if isinstance(exc, BoardError):
            return exc
        if isinstance(exc, _UnknownHostKey):
            return HostKeyError(
                f"host key of {exc.name} is unknown ({exc.key.get_name()} {fingerprint(exc.key)}); refused",
                hint="check that fingerprint on the board (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then "
                "pass --trust-new-host to record it",
            )
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyError(
                f"the SSH host key of {spec.address} has CHANGED since it was recorded in known_hosts "
                f"(now {exc.key.get_name()} {fingerprint(exc.key)}); refused",
                hint="if the board was re-installed, remove its old key with "
                f"`ssh-keygen -R '{spec.host_key_name}'` (and from {toolkit_known_hosts()}), then connect again",
            )
        if isinstance(exc, _SilentPeer):
            return BoardUnreachableError(
                f"SSH to {spec.address}: timed out waiting for the SSH banner after {spec.connect_timeout_s:.0f} s "
                f"(after {self.attempts} attempt(s))",
                hint="something answers on that port but does not speak SSH: check the port, or the board's sshd",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return BoardUnreachableError(
                f"SSH authentication to {spec.address} failed: {exc}",
                hint="check the user and key (ssh-copy-id puts your key on the board)",
            )
        if isinstance(exc, paramiko.SSHException):
            return BoardUnreachableError(f"SSH to {spec.address} failed: {exc}")
        if isinstance(exc, (OSError, EOFError)):
            if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) and exc.errors:
                exc = next(iter(exc.errors.values()))
            if isinstance(exc, ConnectionRefusedError):
                reason = "connection refused"
            elif isinstance(exc, (TimeoutError, socket.timeout)):
                reason = f"timed out after {spec.connect_timeout_s:.0f} s"
            else:
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
            return BoardUnreachableError(
                f"cannot reach board {spec.address}: {reason}{tries}", hint="is it on, and is sshd running?"
            )
        return exc

    def close(self) -> None:
        """Never raises: it runs on the way out of an error (a dropped connection) too."""
        for closable in (self._sftp, self._client):
            if closable is not None:
                try:
                    closable.close()
                except Exception as exc:
                    log.debug("closing the connection to %s: %s", self.spec.address, exc or type(exc).__name__)
        self._sftp = None
        self._client = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            assert self._client is not None, "not connected"
            self._sftp = self._client.open_sftp()
            self._sftp.get_channel().settimeout(self.spec.timeout_for("sftp"))
        return self._sftp

    # -- commands ---------------------------------------------------------------------------
    def run(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        timeout_s: float | None = None,
        what: str | None = None,
    ) -> tuple[int, str, str]:
        """Run a command (every word shell-quoted, under the watchdog) and return (exit code,
        stdout, stderr). Output past STDOUT_CAP_BYTES / STDERR_CAP_BYTES, the timeout, Ctrl-C or a
        dropped connection: the channel is closed, which stops the command on the board."""
        what = what or f"`{argv[0]}`"
        command = _watched(argv, env)
        timeout_s = timeout_s or self.spec.timeout_for()
        chan = self._session(what)
        out: list[bytes] = []
        err = bytearray()
        n_out = n_err = 0
        deadline = time.monotonic() + timeout_s
        try:
            chan.exec_command(command)
            while True:
                if chan.recv_ready():
                    data = chan.recv(1 << 16)
                    n_out += len(data)
                    out.append(data)
                elif chan.recv_stderr_ready():
                    data = chan.recv_stderr(1 << 16)
                    n_err += len(data)
                    err += data
                    del err[:-STDERR_KEEP_BYTES]
                elif chan.exit_status_ready():
                    break
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BoardTimeoutError(
                            f"{what} on {self.spec.address} did not finish in {timeout_s:.0f} s; it was "
                            "stopped on the board",
                            hint=TIMEOUT_HINT,
                        )
                    select.select([chan], [], [], min(left, 1.0))
                for stream, n, cap in (("stdout", n_out, STDOUT_CAP_BYTES), ("stderr", n_err, STDERR_CAP_BYTES)):
                    if n > cap:
                        raise BoardOutputError(
                            f"{what} on {self.spec.address} printed more than {cap >> 20} MiB on {stream}; "
                            "it was stopped on the board",
                            hint="the board's Python or agent is not behaving: check `python` in boards.toml, "
                            "then deploy again",
                        )
            # drain what arrived with the exit status (bounded: the caps still hold)
            while chan.recv_ready() and n_out <= STDOUT_CAP_BYTES:
                data = chan.recv(1 << 16)
                n_out += len(data)
                out.append(data)
            while chan.recv_stderr_ready() and n_err <= STDERR_CAP_BYTES:
                err += chan.recv_stderr(1 << 16)
                del err[:-STDERR_KEEP_BYTES]
            code = chan.recv_exit_status()
            if code == -1 and not self._client.get_transport().is_active():
                raise BoardConnectionLostError(
                    f"lost the SSH connection to {self.spec.address} while {what} was running",
                    hint="its remote processes stop with the session; check the board and the network, then "
                    "run it again",
                )
        finally:
            _close_quietly(chan)
        return code, b"".join(out).decode(errors="replace"), bytes(err).decode(errors="replace")

    @property
    def active(self) -> bool:
        """The SSH connection is up (a dropped board's is not)."""
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def start(
        self, argv: list[str], *, env: dict[str, str] | None = None, what: str | None = None, on_line=None
    ) -> "RemoteProcess":
        """Start a long-running command on a channel of its own, under the watchdog: it runs while
        the channel is open, and closing it (RemoteProcess.stop, Ctrl-C, the connection dropping)
        stops its whole process group on the board. Its stdout and stderr lines go to `on_line`."""
        what = what or f"`{argv[0]}`"
        chan = self._session(what)
        try:
            chan.set_combine_stderr(True)
            chan.exec_command(_watched(argv, env))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            _close_quietly(chan)
            raise self._lost(what, exc) from None
        return RemoteProcess(chan, what, on_line)

    def _session(self, what: str):
        """A new channel of the connection, or BoardConnectionLostError naming `what`."""
        assert self._client is not None, "not connected"
        try:
            return self._client.get_transport().open_session(timeout=self.spec.connect_timeout_s)
        except (paramiko.SSHException, OSError, EOFError, AttributeError) as exc:
            raise self._lost(what, exc) from None

    def _lost(self, what: str, exc: BaseException) -> BoardConnectionLostError:
        return BoardConnectionLostError(
            f"lost the SSH connection to {self.spec.address} before {what} could start: {exc or type(exc).__name__}",
            hint="check the board and the network, then run the command again",
        )

    def forward(self, remote_port: int) -> "Forward":
        """127.0.0.1:<a free port> on the host -> 127.0.0.1:`remote_port` on the board, each
        connection a direct-tcpip channel of this (verified) SSH connection: no port is opened
        on the board's network."""
        assert self._client is not None, "not connected"
        return Forward(self._client.get_transport(), remote_port, self.spec.address)

    def arch(self) -> str:
        """The board's `uname -m`."""
        if self._arch is None:
            code, out, err = self.run(["uname", "-m"], timeout_s=self.spec.timeout_for("version"))
            if code != 0 or not out.strip():
                raise BoardError(f"`uname -m` failed on {self.spec.address}: {(err or out).strip() or code}")
            self._arch = out.strip()
        return self._arch

    def root(self) -> PurePosixPath:
        return PurePosixPath(self.spec.remote_root)

    def venv_python(self) -> PurePosixPath:
        return self.root() / "venv" / "bin" / "python"

    def python(self) -> str:
        """The Python the agent runs with: the board spec's, else the venv `edgeopt board setup`
        made, else `python3` on the board's PATH."""
        if self._python is None:
            if self.spec.python:
                self._python = self.spec.python
            else:
                code, _, _ = self.run(
                    ["test", "-x", str(self.venv_python())], timeout_s=self.spec.timeout_for("version")
                )
                self._python = str(self.venv_python()) if code == 0 else "python3"
        return self._python

    def remote_sha256(self, paths: list[PurePosixPath]) -> dict[str, str]:
        """sha256 of each remote file that exists (missing files are simply absent)."""
        if not paths:
            return {}
        code, out, err = self.run(["sha256sum", "--", *map(str, paths)], timeout_s=self.spec.timeout_for("info"))
        if code == 127:  # no coreutils: the board's Python does it
            script = (
                "import hashlib,sys\n"
                "for p in sys.argv[1:]:\n"
                "    try: print(hashlib.sha256(open(p,'rb').read()).hexdigest()+'  '+p)\n"
                "    except OSError: pass\n"
            )
            code, out, err = self.run(
                ["python3", "-c", script, *map(str, paths)], timeout_s=self.spec.timeout_for("info")
            )
        result = {}
        for line in out.splitlines():
            digest, sep, name = line.partition("  ")
            if sep and len(digest) == 64:
                result[name.lstrip("*")] = digest
        return result

    # -- files ------------------------------------------------------------------------------
    def makedirs(self, path: PurePosixPath) -> None:
        current = PurePosixPath("/") if path.is_absolute() else PurePosixPath()
        for part in path.parts:
            if part == "/":
                continue
            current = current / part
            try:
                self.sftp.stat(str(current))
            except FileNotFoundError:
                self.sftp.mkdir(str(current))

    def check_inside_store(self, remote: PurePosixPath) -> None:
        """On the board, before anything is written: the target's folder, symlinks resolved by
        the board's SFTP server, is inside the store (remote_root), and the target is not a symlink."""
        if ".." in remote.parts or any(ord(c) < 32 or ord(c) == 127 for c in str(remote)):
            raise BundleError(
                f"refusing to write {str(remote)!r} on {self.spec.address}: not a plain path in the store",
                hint="a bundle's files are plain names inside it; rebuild it with `edgeopt compile`",
            )
        root = self.sftp.normalize(str(self.root()))
        real = self.sftp.normalize(str(remote.parent))
        if not (real == root or real.startswith(root.rstrip("/") + "/")):
            raise BundleError(
                f"refusing to write {remote} on {self.spec.address}: its folder resolves to {real}, "
                f"outside the store {root}",
                hint="a symlink in the board's store leads out of it: remove it (edgeopt board clean)",
            )
        try:
            if stat.S_ISLNK(self.sftp.lstat(str(remote)).st_mode or 0):
                raise BundleError(
                    f"refusing to write {remote} on {self.spec.address}: it is a symlink",
                    hint="remove it from the board's store (edgeopt board clean)",
                )
        except FileNotFoundError:
            pass

    def upload(self, local: Path, remote: PurePosixPath, *, in_store: bool = False) -> None:
        """Upload to a temporary name, then rename: a reader never sees half a file. `in_store`:
        refuse a target outside the store (checked on the board first)."""
        tmp = remote.with_name(f".{remote.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            self.makedirs(remote.parent)
            if in_store:
                self.check_inside_store(remote)
            self.sftp.put(str(local), str(tmp))
            self.sftp.posix_rename(str(tmp), str(remote))
        except BaseException as exc:
            try:
                self.sftp.remove(str(tmp))
                left = "nothing half-written was left"
            except FileNotFoundError:
                left = "nothing half-written was left"
            except Exception:
                left = f"{tmp.name} may be left half-written; the next deploy of this bundle removes it"
            if isinstance(exc, (OSError, paramiko.SSHException, EOFError)):
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                raise BoardError(
                    f"uploading {local.name} to {self.spec.address}:{remote} failed: {reason}",
                    hint=f"check the board's free space and permissions; {left}",
                ) from None
            raise
        self.uploads += 1
        self.uploaded_bytes += local.stat().st_size

    def remove_tree(self, path: PurePosixPath) -> None:
        try:
            entries = self.sftp.listdir_attr(str(path))
        except FileNotFoundError:
            return
        for e in entries:
            child = path / e.filename
            if stat.S_ISDIR(e.st_mode or 0):
                self.remove_tree(child)
            else:
                self.sftp.remove(str(child))
        self.sftp.rmdir(str(path))

    def listdir_attr(self, path: PurePosixPath) -> list:
        try:
            return self.sftp.listdir_attr(str(path))
        except FileNotFoundError:
            return []


class RemoteProcess:
    """A command Connection.start left running on the board; `stop()` closes its channel, and the
    watchdog on the board stops its process group (no process of it outlives the channel)."""

    KEEP_LINES = 200

    def __init__(self, chan, what: str, on_line=None) -> None:
        self.chan = chan
        self.what = what
        self.lines: deque[str] = deque(maxlen=self.KEEP_LINES)
        self._on_line = on_line
        self._eof = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"edgeopt-remote-{what}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                data = self.chan.recv(1 << 16)
                if not data:
                    break
                buf += data
                *done, buf = buf.split(b"\n")
                for raw in done:
                    line = raw.decode(errors="replace").rstrip("\r")
                    self.lines.append(line)
                    if self._on_line is not None:
                        try:
                            self._on_line(line)
                        except Exception as exc:  # a counter's bug must not stop the reading
                            log.debug("line handler of %s: %s", self.what, exc)
        except Exception as exc:  # the connection dropped
            log.debug("%s: %s", self.what, exc or type(exc).__name__)
        finally:
            self._eof.set()

    @property
    def alive(self) -> bool:
        return (
            not self._eof.is_set() and self.chan.get_transport() is not None and self.chan.get_transport().is_active()
        )

    def wait_line(self, pattern, timeout_s: float):
        """The first kept line matching the compiled regex `pattern` (its match), waiting at most
        `timeout_s`; None if the command ended or the time ran out first."""
        deadline = time.monotonic() + timeout_s
        while True:
            for line in list(self.lines):
                m = pattern.search(line)
                if m:
                    return m
            if self._eof.is_set() or time.monotonic() > deadline:
                return None
            self._eof.wait(0.1)

    def exit_status(self) -> int | None:
        return self.chan.recv_exit_status() if self.chan.exit_status_ready() else None

    def stop(self) -> None:
        """Never raises (it runs on the way out of errors)."""
        _close_quietly(self.chan)
        self._thread.join(5)


class Forward:
    """A listener on the host's 127.0.0.1 whose connections are carried to 127.0.0.1:`remote_port`
    on the board by direct-tcpip channels of one SSH connection. Counts the connections it carried
    (`sessions`), whether one is open (`busy`) and the most ever open at once (`peak`)."""

    def __init__(self, transport, remote_port: int, address: str) -> None:
        self.transport = transport
        self.remote_port = remote_port
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.sessions = 0  # connections carried to the end
        self.refused = 0  # connections the board's side did not take
        self.open = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"edgeopt-forward-{self.port}", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self.open > 0

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            threading.Thread(target=self._carry, args=(client, peer), daemon=True).start()

    def _carry(self, client: socket.socket, peer) -> None:
        with self._lock:
            self.open += 1
            self.peak = max(self.peak, self.open)
        chan = None
        try:
            try:
                chan = self.transport.open_channel("direct-tcpip", ("127.0.0.1", self.remote_port), peer, timeout=10)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                log.debug("forward to %s:127.0.0.1:%d refused: %s", self.address, self.remote_port, exc)
                with self._lock:
                    self.refused += 1
                return
            client.setblocking(True)
            while not self._closed.is_set():
                ready, _, _ = select.select([client, chan], [], [], 1.0)
                if client in ready:
                    data = client.recv(1 << 16)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in ready:
                    data = chan.recv(1 << 16)
                    if not data:
                        break
                    client.sendall(data)
                if chan.closed or not self.transport.is_active():
                    break
            with self._lock:
                self.sessions += 1
        except (OSError, paramiko.SSHException, EOFError) as exc:
            log.debug("forward %d -> %s: %s", self.port, self.address, exc)
        finally:
            for closable in (client, chan):
                try:
                    if closable is not None:
                        closable.close()
                except Exception:
                    pass
            with self._lock:
                self.open -= 1

    def close(self) -> None:
        self._closed.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self._thread.join(5)


@dataclass
class Upload:
    local: Path
    remote: PurePosixPath
    sha256: str


class Deployment:
    """The agent and one bundle on a board, and the agent verbs run against them.

    The store is content-addressed: `<root>/agent/<agent digest>/`, `<root>/bundles/<sha256 of
    manifest.json>/`. A file is skipped only when its sha256 *on the board* matches; a missing or
    damaged one is uploaded again. Nothing is uploaded or run before the bundle's architecture
    has been checked against the board's `uname -m`."""

    def __init__(self, conn: Connection, bundle: Bundle) -> None:
        from edgeopt.compile.bundle import check

        check(bundle.path, bundle.manifest)  # names, library: before anything is sent (a Bundle may be built by hand)
        self.conn = conn
        self.bundle = bundle
        root = conn.root()
        self.agent_dir = root / "agent" / agent_digest()
        self.bundle_dir = root / "bundles" / bundle.id
        # named for when it may be removed: a run whose connection dropped cannot remove its own
        # folder, so a later run removes folders past their time (a running bench's never is)
        expires = int(time.time() + TMP_LIFETIME_TIMEOUTS * conn.spec.timeout_for())
        self.tmp_dir = root / "tmp" / f"{expires}-{uuid.uuid4().hex[:12]}"
        self.uploaded: list[str] = []
        self.skipped: list[str] = []
        self.removed_stale: list[str] = []
        self.uploaded_bytes = 0

    def check_target(self) -> str:
        """Refuse a bundle built for another architecture, before anything is uploaded or run."""
        target = self.bundle.manifest.get("target", {})
        want, board = target.get("arch"), self.conn.arch()
        if want and want != board:
            raise BundleError(
                f"bundle {self.bundle.path} was built for {want} (target {target.get('name')!r}) but board "
                f"{self.conn.spec.address} is {board}; nothing was uploaded or run",
                hint="compile for the board's architecture (`edgeopt targets` lists the targets)",
            )
        return board

    def plan(self) -> list[Upload]:
        items = [
            Upload(f, self.agent_dir / f.relative_to(AGENT_SOURCE.parent).as_posix(), sha256_file(f))
            for f in agent_files()
        ]
        # files first, manifest last: a bundle dir with a manifest is complete
        for name in sorted(self.bundle.files):
            items.append(Upload(self.bundle.path / name, self.bundle_dir / name, self.bundle.files[name]["sha256"]))
        items.append(Upload(self.bundle.path / "manifest.json", self.bundle_dir / "manifest.json", self.bundle.id))
        return items

    def remove_stale_parts(self) -> list[str]:
        """Half-written `.part` files an interrupted deploy left in this bundle's or agent's folders."""
        for folder in (self.bundle_dir, self.agent_dir, self.agent_dir / "board", self.agent_dir / "board" / "agent"):
            for e in self.conn.listdir_attr(folder):
                if e.filename.endswith(".part") and stat.S_ISREG(e.st_mode or 0):
                    self.conn.sftp.remove(str(folder / e.filename))
                    self.removed_stale.append(str(folder / e.filename))
        if self.removed_stale:
            log.warning(
                "removed %d half-written file(s) an interrupted deploy left on %s: %s",
                len(self.removed_stale),
                self.conn.spec.address,
                ", ".join(PurePosixPath(p).name for p in self.removed_stale),
            )
        return self.removed_stale

    def remove_expired_tmp(self) -> list[str]:
        """Temporary folders of earlier runs past their time (a dropped bench leaves its own)."""
        removed, now = [], time.time()
        folder = self.tmp_dir.parent
        for e in self.conn.listdir_attr(folder):
            stamp = e.filename.split("-", 1)[0]
            if stamp.isdigit() and int(stamp) < now and stat.S_ISDIR(e.st_mode or 0):
                self.conn.remove_tree(folder / e.filename)
                removed.append(str(folder / e.filename))
        if removed:
            log.warning("removed %d temporary folder(s) earlier runs left on %s", len(removed), self.conn.spec.address)
        self.removed_stale.extend(removed)
        return removed

    def upload(self) -> "Deployment":
        self.check_target()
        self.remove_stale_parts()
        self.remove_expired_tmp()
        items = self.plan()
        remote = self.conn.remote_sha256([u.remote for u in items])
        for u in items:
            if remote.get(str(u.remote)) == u.sha256:
                self.skipped.append(str(u.remote))
                continue
            self.conn.upload(u.local, u.remote, in_store=True)
            self.uploaded.append(str(u.remote))
            self.uploaded_bytes += u.local.stat().st_size
        self._mark_most_recent()
        return self

    def _mark_most_recent(self) -> None:
        """The bundle directory's mtime orders the store for `board clean --keep N`. SFTP times
        are whole seconds, so two deploys in one second would tie: ours becomes strictly newest."""
        try:
            others = [
                e.st_mtime or 0
                for e in self.conn.listdir_attr(self.bundle_dir.parent)
                if e.filename != self.bundle_dir.name
            ]
            stamp = max([int(time.time()), *[m + 1 for m in others]])
            self.conn.sftp.utime(str(self.bundle_dir), (stamp, stamp))
        except OSError:
            pass

    def put(self, local: Path) -> PurePosixPath:
        remote = self.tmp_dir / local.name
        self.conn.upload(local, remote)
        return remote

    def cleanup(self) -> None:
        """Remove this run's temporary folder; never raises (it runs in `finally`, and must not
        hide the error that got there, such as a dropped connection)."""
        try:
            self.conn.remove_tree(self.tmp_dir)
        except Exception as exc:
            log.warning(
                "could not remove %s on %s (%s); a run after %s removes it, `edgeopt board clean` at once",
                self.tmp_dir,
                self.conn.spec.address,
                exc or type(exc).__name__,
                time.strftime("%H:%M", time.localtime(int(self.tmp_dir.name.split("-")[0]))),
            )

    def agent(self, verb: str, *args: str, timeout_s: float | None = None) -> dict:
        """Run `python3 -m board.agent VERB ...` on the board and return its JSON document."""
        return run_agent(self.conn, self.agent_dir, verb, *args, timeout_s=timeout_s)


def run_agent(
    conn: Connection,
    agent_dir: PurePosixPath,
    verb: str,
    *args: str,
    timeout_s: float | None = None,
    python: str | None = None,
) -> dict:
    from ..agentdoc import parse

    spec = conn.spec
    argv = [python or conn.python(), "-I", "-B", "-c", AGENT_BOOT, str(agent_dir), verb, *args]
    env = {"TVM_USE_RUNTIME_LIB": "1", **spec.env}
    timeout_s = timeout_s or spec.timeout_for(verb)
    code, out, err = conn.run(argv, env=env, timeout_s=timeout_s, what=f"board agent '{verb}'")
    log.debug("agent %s exit %s; stderr:\n%s", verb, code, err)
    try:
        doc = parse(out, verb=verb, where=spec.address)
    except (ValueError, RecursionError):  # not JSON at all (JSONDecodeError is a ValueError)
        last = (err.strip().splitlines() or ["(no output)"])[-1][:300]
        raise AgentError(
            f"board agent '{verb}' on {spec.address} {describe_exit(code)} without a JSON result: {last}",
            hint="run `edgeopt board info` to check the board's Python, numpy and TVM runtime "
            "(`edgeopt board setup` installs them)",
        ) from None
    if doc.get("schema") != AGENT_SCHEMA:
        raise AgentError(f"board agent speaks {doc.get('schema')!r}, expected {AGENT_SCHEMA!r}")
    if doc.get("agent_digest") != agent_digest():
        raise AgentError(
            f"the agent on {spec.address} ({doc.get('agent_digest')}) is not the one this edgeopt uploaded "
            f"({agent_digest()})",
            hint="deploy again; the agent is re-uploaded when its files differ",
        )
    leaked = HOST_ONLY_MODULES & set(doc.get("imports", []))
    if leaked:
        raise AgentError(
            f"board agent '{verb}' imported host-only module(s): {', '.join(sorted(leaked))}",
            hint="the agent may use only the standard library, numpy and the TVM runtime; please report this",
        )
    if not doc.get("ok"):
        e = doc.get("error") or {}
        if e.get("kind") == "target_mismatch":
            raise BundleError(
                f"board agent refused the bundle (target_mismatch): {e.get('message')}",
                hint="compile for the board's target",
            )
        raise AgentError(f"board agent '{verb}' failed ({e.get('kind')}): {e.get('message')}")
    return doc
