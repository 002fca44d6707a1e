"""Talking to a board over SSH (paramiko): upload the agent and a bundle by SFTP into a
content-addressed store, run agent verbs, parse their JSON. The only module that imports paramiko."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import select
import shlex
import socket
import stat
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import paramiko

from edgeopt.compile.bundle import Bundle, sha256_file

from .boardconf import toolkit_known_hosts, user_known_hosts, user_ssh_config
from edgeopt.errors import AgentError, BoardError, BoardUnreachableError, BundleError, HostKeyError

log = logging.getLogger("edgeopt.deploy")
# paramiko logs failures (with tracebacks) that we turn into one clear error of our own
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

AGENT_SCHEMA = "edgeopt.agent/1"
REMOTE_ROOT = PurePosixPath(".edgeopt")  # relative to the login directory, as SFTP and exec both see it
AGENT_SOURCE = Path(__file__).resolve().parent.parent / "board"
# what the agent must never import on a board (it reports every top-level module it imported)
HOST_ONLY_MODULES = frozenset({"torch", "onnx", "paramiko", "edgeopt", "toolkit", "compile"})


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
    command_timeout_s: float = 600.0
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


def apply_ssh_config(spec: BoardSpec, *, explicit_port: bool, explicit_user: bool,
                     config_path: Path | None = None) -> BoardSpec:
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
    h = hashlib.sha256()
    for f in agent_files():
        h.update(f.relative_to(AGENT_SOURCE.parent).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]




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
        log.info("recorded the host key of %s (%s %s) in %s", hostname, key.get_name(), fingerprint(key), self.record_to)


def _is_transient(exc: BaseException) -> bool:
    """Worth another try: nothing listening yet, a reset, a timeout, a dropped banner. Never an
    authentication or host key failure, nor a name that does not resolve."""
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return all(isinstance(e, (ConnectionRefusedError, ConnectionResetError, TimeoutError, socket.timeout))
                   for e in exc.errors.values())
    if isinstance(exc, (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError,
                        TimeoutError, socket.timeout, EOFError)):
        return True
    if isinstance(exc, paramiko.SSHException) and not isinstance(
            exc, (paramiko.AuthenticationException, paramiko.BadHostKeyException)):
        text = str(exc)
        return "banner" in text or "reset" in text.lower() or "EOF" in text
    return False


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
                channel_timeout=spec.connect_timeout_s,
                password=None,
            )
        except BaseException:
            client.close()
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
                hint="check that fingerprint on the board (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then pass --trust-new-host to record it",
            )
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyError(
                f"the SSH host key of {spec.address} has CHANGED since it was recorded in known_hosts "
                f"(now {exc.key.get_name()} {fingerprint(exc.key)}); refused",
                hint="if the board was re-installed, remove its old key with "
                     f"`ssh-keygen -R '{spec.host_key_name}'` (and from {toolkit_known_hosts()}), then connect again",
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
            self._sftp.get_channel().settimeout(self.spec.command_timeout_s)
        return self._sftp

    # -- commands ---------------------------------------------------------------------------
    def run(self, argv: list[str], *, env: dict[str, str] | None = None, timeout_s: float | None = None) -> tuple[int, str, str]:
        """Run a command (every word shell-quoted) and return (exit code, stdout, stderr)."""
        assert self._client is not None, "not connected"
        words = [f"{k}={v}" for k, v in (env or {}).items()]
        command = " ".join(shlex.quote(w) for w in (["env", *words] if words else []) + list(argv))
        timeout_s = timeout_s or self.spec.command_timeout_s
        try:
            chan = self._client.get_transport().open_session(timeout=self.spec.connect_timeout_s)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise BoardUnreachableError(f"lost the SSH connection to {self.spec.address}: {exc or type(exc).__name__}") from None
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

    def arch(self) -> str:
        """The board's `uname -m`."""
        if self._arch is None:
            code, out, err = self.run(["uname", "-m"], timeout_s=60)
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
                code, _, _ = self.run(["test", "-x", str(self.venv_python())], timeout_s=60)
                self._python = str(self.venv_python()) if code == 0 else "python3"
        return self._python

    def remote_sha256(self, paths: list[PurePosixPath]) -> dict[str, str]:
        """sha256 of each remote file that exists (missing files are simply absent)."""
        if not paths:
            return {}
        code, out, err = self.run(["sha256sum", "--", *map(str, paths)], timeout_s=300)
        if code == 127:  # no coreutils: the board's Python does it
            script = ("import hashlib,sys\n"
                      "for p in sys.argv[1:]:\n"
                      "    try: print(hashlib.sha256(open(p,'rb').read()).hexdigest()+'  '+p)\n"
                      "    except OSError: pass\n")
            code, out, err = self.run(["python3", "-c", script, *map(str, paths)], timeout_s=300)
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

    def upload(self, local: Path, remote: PurePosixPath) -> None:
        """Upload to a temporary name, then rename: a reader never sees half a file."""
        tmp = remote.with_name(f".{remote.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            self.makedirs(remote.parent)
            self.sftp.put(str(local), str(tmp))
            self.sftp.posix_rename(str(tmp), str(remote))
        except BaseException as exc:
            try:
                self.sftp.remove(str(tmp))
            except Exception:
                pass
            if isinstance(exc, (OSError, paramiko.SSHException, EOFError)):
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                raise BoardError(f"uploading {local.name} to {self.spec.address}:{remote} failed: {reason}",
                                 hint="check the board's free space and permissions; nothing half-written was left") from None
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
        self.conn = conn
        self.bundle = bundle
        root = conn.root()
        self.agent_dir = root / "agent" / agent_digest()
        self.bundle_dir = root / "bundles" / bundle.id
        self.tmp_dir = root / "tmp" / uuid.uuid4().hex[:12]
        self.uploaded: list[str] = []
        self.skipped: list[str] = []
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
        items = [Upload(f, self.agent_dir / f.relative_to(AGENT_SOURCE.parent).as_posix(), sha256_file(f))
                 for f in agent_files()]
        # files first, manifest last: a bundle dir with a manifest is complete
        for name in sorted(self.bundle.files):
            items.append(Upload(self.bundle.path / name, self.bundle_dir / name, self.bundle.files[name]["sha256"]))
        items.append(Upload(self.bundle.path / "manifest.json", self.bundle_dir / "manifest.json", self.bundle.id))
        return items

    def upload(self) -> "Deployment":
        self.check_target()
        items = self.plan()
        remote = self.conn.remote_sha256([u.remote for u in items])
        for u in items:
            if remote.get(str(u.remote)) == u.sha256:
                self.skipped.append(str(u.remote))
                continue
            self.conn.upload(u.local, u.remote)
            self.uploaded.append(str(u.remote))
            self.uploaded_bytes += u.local.stat().st_size
        self._mark_most_recent()
        return self

    def _mark_most_recent(self) -> None:
        """The bundle directory's mtime orders the store for `board clean --keep N`. SFTP times
        are whole seconds, so two deploys in one second would tie: ours becomes strictly newest."""
        try:
            others = [e.st_mtime or 0 for e in self.conn.listdir_attr(self.bundle_dir.parent)
                      if e.filename != self.bundle_dir.name]
            stamp = max([int(time.time()), *[m + 1 for m in others]])
            self.conn.sftp.utime(str(self.bundle_dir), (stamp, stamp))
        except OSError:
            pass

    def put(self, local: Path) -> PurePosixPath:
        remote = self.tmp_dir / local.name
        self.conn.upload(local, remote)
        return remote

    def cleanup(self) -> None:
        self.conn.remove_tree(self.tmp_dir)

    def agent(self, verb: str, *args: str, timeout_s: float | None = None) -> dict:
        """Run `python3 -m board.agent VERB ...` on the board and return its JSON document."""
        return run_agent(self.conn, self.agent_dir, verb, *args, timeout_s=timeout_s)


def run_agent(conn: Connection, agent_dir: PurePosixPath, verb: str, *args: str, timeout_s: float | None = None,
              python: str | None = None) -> dict:
    spec = conn.spec
    argv = [python or conn.python(), "-m", "board.agent", verb, *args]
    env = {"PYTHONPATH": str(agent_dir), "TVM_USE_RUNTIME_LIB": "1", "PYTHONDONTWRITEBYTECODE": "1", **spec.env}
    code, out, err = conn.run(argv, env=env, timeout_s=timeout_s)
    log.debug("agent %s exit %s; stderr:\n%s", verb, code, err)
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        last = (err.strip().splitlines() or ["(no output)"])[-1]
        raise AgentError(
            f"board agent '{verb}' on {spec.address} exited {code} without a JSON result: {last}",
            hint="run `edgeopt board info` to check the board's Python, numpy and TVM runtime "
                 "(`edgeopt board setup` installs them)",
        ) from None
    if doc.get("schema") != AGENT_SCHEMA:
        raise AgentError(f"board agent speaks {doc.get('schema')!r}, expected {AGENT_SCHEMA!r}")
    if doc.get("agent_digest") != agent_digest():
        raise AgentError(
            f"the agent on {spec.address} ({doc.get('agent_digest')}) is not the one this edgeopt uploaded ({agent_digest()})",
            hint="deploy again; the agent is re-uploaded when its files differ",
        )
    leaked = HOST_ONLY_MODULES & set(doc.get("imports", []))
    if leaked:
        raise AgentError(f"board agent '{verb}' imported host-only module(s): {', '.join(sorted(leaked))}",
                         hint="the agent may use only the standard library, numpy and the TVM runtime; please report this")
    if not doc.get("ok"):
        e = doc.get("error", {})
        if e.get("kind") == "target_mismatch":
            raise BundleError(f"board agent refused the bundle (target_mismatch): {e.get('message')}",
                              hint="compile for the board's target")
        raise AgentError(f"board agent '{verb}' failed ({e.get('kind')}): {e.get('message')}")
    return doc
