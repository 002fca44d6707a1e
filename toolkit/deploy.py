"""Talking to a board over SSH (paramiko): upload the agent and a bundle by SFTP, run agent
verbs, parse their JSON. The only module that imports paramiko."""
from __future__ import annotations

import hashlib
import json
import logging
import select
import shlex
import socket
import stat
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import paramiko

from compile.bundle import Bundle

from .errors import AgentError, BoardError, BoardUnreachableError, HostKeyError

log = logging.getLogger("edgeopt.deploy")
# paramiko logs failures (with tracebacks) that we turn into one clear error of our own
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

AGENT_SCHEMA = "edgeopt.agent/1"
REMOTE_ROOT = PurePosixPath(".edgeopt")  # relative to the login directory, as SFTP and exec both see it
AGENT_SOURCE = Path(__file__).resolve().parent.parent / "board"


@dataclass(frozen=True)
class BoardSpec:
    """How to reach a board. No passwords: key files or an SSH agent only."""

    kind: str
    host: str
    port: int = 22
    user: str | None = None
    identity_file: Path | None = None
    known_hosts: Path | None = None  # None: the user's ~/.ssh/known_hosts
    python: str = "python3"
    trust_new_host: bool = False
    use_ssh_agent: bool = True
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 600.0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


def agent_files() -> list[Path]:
    """The files that make up the agent package, relative to the `board/` parent."""
    files = [AGENT_SOURCE / "__init__.py"]
    files += sorted((AGENT_SOURCE / "agent").glob("*.py"))
    return files


def agent_digest() -> str:
    h = hashlib.sha256()
    for f in agent_files():
        h.update(f.relative_to(AGENT_SOURCE.parent).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


class Connection:
    """An open SSH connection to one board; use as a context manager."""

    def __init__(self, spec: BoardSpec) -> None:
        self.spec = spec
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    # -- connecting -------------------------------------------------------------------------
    def __enter__(self) -> "Connection":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        spec = self.spec
        client = paramiko.SSHClient()
        if spec.known_hosts is not None:
            client.load_host_keys(str(spec.known_hosts))
        else:
            client.load_system_host_keys()
        # Unknown hosts are refused unless the user asked to trust them; a changed key always is.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy() if spec.trust_new_host else paramiko.RejectPolicy())
        try:
            client.connect(
                spec.host,
                port=spec.port,
                username=spec.user,
                key_filename=str(spec.identity_file) if spec.identity_file else None,
                allow_agent=spec.use_ssh_agent,
                look_for_keys=spec.use_ssh_agent,
                timeout=spec.connect_timeout_s,
                banner_timeout=spec.connect_timeout_s,
                auth_timeout=spec.connect_timeout_s,
            )
        except paramiko.BadHostKeyException:
            raise HostKeyError(
                f"the SSH host key of {spec.address} has CHANGED since it was recorded in known_hosts",
                hint="if the board was re-installed, remove its old key with `ssh-keygen -R` and connect again",
            ) from None
        except paramiko.AuthenticationException as exc:
            raise BoardUnreachableError(
                f"SSH authentication to {spec.address} failed: {exc}",
                hint="check the user and key (ssh-copy-id puts your key on the board)",
            ) from None
        except paramiko.SSHException as exc:
            if "known_hosts" in str(exc) or "not found in" in str(exc):
                raise HostKeyError(
                    f"{spec.address} is not in known_hosts",
                    hint="check its fingerprint, then pass --trust-new-host to record it",
                ) from None
            raise BoardUnreachableError(f"SSH to {spec.address} failed: {exc}") from None
        except (OSError, socket.timeout) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise BoardUnreachableError(
                f"cannot reach board {spec.address}: {reason}", hint="is it on, and is sshd running?"
            ) from None
        self._client = client

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            assert self._client is not None, "not connected"
            self._sftp = self._client.open_sftp()
        return self._sftp

    # -- commands ---------------------------------------------------------------------------
    def run(self, argv: list[str], *, env: dict[str, str] | None = None, timeout_s: float | None = None) -> tuple[int, str, str]:
        """Run a command (every word shell-quoted) and return (exit code, stdout, stderr)."""
        assert self._client is not None, "not connected"
        words = [f"{k}={v}" for k, v in (env or {}).items()]
        command = " ".join(shlex.quote(w) for w in (["env", *words] if words else []) + list(argv))
        timeout_s = timeout_s or self.spec.command_timeout_s
        chan = self._client.get_transport().open_session(timeout=self.spec.connect_timeout_s)
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        try:
            chan.exec_command(command)
            while True:
                if chan.recv_ready():
                    out.append(chan.recv(1 << 16))
                elif chan.recv_stderr_ready():
                    err.append(chan.recv_stderr(1 << 16))
                elif chan.exit_status_ready():
                    break
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BoardError(
                            f"command on {self.spec.address} did not finish in {timeout_s:.0f} s: {argv[0]} ...",
                            hint="raise the timeout, or check the board's load",
                        )
                    select.select([chan], [], [], min(left, 1.0))
            # drain what arrived with the exit status
            while chan.recv_ready():
                out.append(chan.recv(1 << 16))
            while chan.recv_stderr_ready():
                err.append(chan.recv_stderr(1 << 16))
            code = chan.recv_exit_status()
        finally:
            chan.close()
        return code, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace")

    # -- files ------------------------------------------------------------------------------
    def makedirs(self, path: PurePosixPath) -> None:
        current = PurePosixPath()
        for part in path.parts:
            current = current / part
            try:
                self.sftp.stat(str(current))
            except FileNotFoundError:
                self.sftp.mkdir(str(current))

    def upload(self, local: Path, remote: PurePosixPath) -> None:
        """Upload to a temporary name, then rename: a reader never sees half a file."""
        self.makedirs(remote.parent)
        tmp = remote.with_name(f".{remote.name}.{uuid.uuid4().hex[:8]}.part")
        self.sftp.put(str(local), str(tmp))
        try:
            self.sftp.posix_rename(str(tmp), str(remote))
        except IOError:
            self.sftp.remove(str(tmp))
            raise

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


class Deployment:
    """The agent and one bundle on a board, and the agent verbs run against them."""

    def __init__(self, conn: Connection, bundle: Bundle) -> None:
        self.conn = conn
        self.bundle = bundle
        self.agent_dir = REMOTE_ROOT / "agent" / agent_digest()
        self.bundle_dir = REMOTE_ROOT / "bundles" / bundle.id
        self.tmp_dir = REMOTE_ROOT / "tmp" / uuid.uuid4().hex[:12]

    def upload(self) -> "Deployment":
        for f in agent_files():
            self.conn.upload(f, self.agent_dir / f.relative_to(AGENT_SOURCE.parent).as_posix())
        # files first, manifest last: a bundle dir with a manifest is complete
        names = sorted(self.bundle.files) + ["manifest.json"]
        for name in names:
            self.conn.upload(self.bundle.path / name, self.bundle_dir / name)
        return self

    def put(self, local: Path) -> PurePosixPath:
        remote = self.tmp_dir / local.name
        self.conn.upload(local, remote)
        return remote

    def cleanup(self) -> None:
        self.conn.remove_tree(self.tmp_dir)

    def agent(self, verb: str, *args: str, timeout_s: float | None = None) -> dict:
        """Run `python3 -m board.agent VERB ...` on the board and return its JSON document."""
        spec = self.conn.spec
        argv = [spec.python, "-m", "board.agent", verb, *args]
        env = {"PYTHONPATH": str(self.agent_dir), "TVM_USE_RUNTIME_LIB": "1", **spec.env}
        code, out, err = self.conn.run(argv, env=env, timeout_s=timeout_s)
        log.debug("agent %s exit %s; stderr:\n%s", verb, code, err)
        try:
            doc = json.loads(out)
        except json.JSONDecodeError:
            last = (err.strip().splitlines() or ["(no output)"])[-1]
            raise AgentError(
                f"board agent '{verb}' on {spec.address} exited {code} without a JSON result: {last}",
                hint="run `edgeopt board info` to check the board's Python, numpy and TVM runtime",
            ) from None
        if doc.get("schema") != AGENT_SCHEMA:
            raise AgentError(f"board agent speaks {doc.get('schema')!r}, expected {AGENT_SCHEMA!r}")
        if not doc.get("ok"):
            e = doc.get("error", {})
            raise AgentError(f"board agent '{verb}' failed ({e.get('kind')}): {e.get('message')}")
        return doc
