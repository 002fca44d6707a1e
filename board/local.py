"""The embedded local board: a real SSH server (asyncssh) on 127.0.0.1 with throw-away keys,
running commands with this machine's CPU and Python. Nothing is mocked: the host reaches it
with the same SSH client, SFTP uploads and agent commands as any other board.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shlex
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import asyncssh

from edgeopt.errors import BoardError

HOST = "127.0.0.1"
USER = "edgeopt"
START_TIMEOUT_S = 60  # returns as soon as it listens; generous so a loaded host cannot break it
REAP_TIMEOUT_S = 5  # a killed command and its redirect clean-up end at once; bounded so stop() cannot hang


class _Server(asyncssh.SSHServer):
    def __init__(self, user: str, client_key: asyncssh.SSHKey, connections: set) -> None:
        self._user = user
        self._key = client_key.public_data
        self._connections = connections
        self._conn = None

    def connection_made(self, conn) -> None:
        self._conn = conn
        self._connections.add(conn)

    def connection_lost(self, exc) -> None:
        self._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # always authenticate

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._user and key.public_data == self._key

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        # port forwards to this machine's loopback only (OpenSSH's `PermitOpen localhost:*`):
        # what tuning uses to reach the RPC server it starts on the board
        return dest_host in ("127.0.0.1", "localhost")

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # no remote (board -> host) forwards


async def _reap(proc: asyncio.subprocess.Process, process: asyncssh.SSHServerProcess) -> None:
    """A dropped or cancelled session: its command killed and waited for, and asyncssh's redirect
    clean-up run, before the loop that owns their transports may close (else their finalizers run
    on a closed loop)."""
    if proc.returncode is None:
        proc.kill()
    for step in (proc.wait, process.wait_closed):
        try:
            await asyncio.wait_for(step(), REAP_TIMEOUT_S)
        except (asyncio.CancelledError, asyncio.TimeoutError, asyncssh.Error, OSError):
            pass  # the session is going away either way: the caller re-raises its own error


class LocalBoard:
    """Start with `with LocalBoard() as board:`; `board.port`, `board.known_hosts`,
    `board.client_key` and `board.user` are what an SSH client needs."""

    kind = "local"

    def __init__(self, *, port: int = 0, home: Path | None = None, user: str = USER) -> None:
        self.requested_port = port
        self.user = user
        self.host = HOST
        self._own_home = home is None
        self.home = Path(tempfile.mkdtemp(prefix="edgeopt-board-")) if home is None else home
        self._keys = Path(tempfile.mkdtemp(prefix="edgeopt-board-keys-"))
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None
        self._connections: set = set()

    @property
    def known_hosts(self) -> Path:
        return self._keys / "known_hosts"

    @property
    def client_key(self) -> Path:
        return self._keys / "id_ed25519"

    def _env(self) -> dict[str, str]:
        env = {
            "HOME": str(self.home),
            "USER": self.user,
            "LANG": "C.UTF-8",
            "PATH": f"{self.home / '.bin'}:/usr/local/bin:/usr/bin:/bin",
        }
        # the host's numpy/OpenBLAS safety settings hold for the board's numpy too
        env.update({k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")})
        return env

    async def _handle(self, process: asyncssh.SSHServerProcess) -> None:
        if not process.command:
            process.stderr.write(b"edgeopt local board: interactive shells are not offered\n")
            process.exit(1)
            return
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            process.command,
            cwd=self.home,
            env=self._env(),
            start_new_session=True,  # like sshd: a session of its own, which the watchdog may stop whole
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await process.redirect(stdin=proc.stdin)

        async def pump(src: asyncio.StreamReader, dst) -> None:
            while chunk := await src.read(1 << 16):
                dst.write(chunk)

        try:
            # all output is written before the exit status, so nothing is lost at the end
            await asyncio.gather(pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr))
            code = await proc.wait()
        except (asyncio.CancelledError, asyncssh.Error, OSError):
            await _reap(proc, process)
            raise
        process.exit(code)
        await process.wait_closed()  # runs asyncssh's redirect clean-up tasks

    async def _start(self) -> None:
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key.write_private_key(str(self.client_key), format_name="openssh")
        os.chmod(self.client_key, 0o600)
        home = str(self.home).encode()
        try:
            self._server = await asyncssh.create_server(
                lambda: _Server(self.user, client_key, self._connections),
                self.host,
                self.requested_port,
                server_host_keys=[host_key],
                process_factory=self._handle,
                encoding=None,
                sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=home),
                allow_scp=False,
                kbdint_auth=False,
                password_auth=False,
                reuse_address=False,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BoardError(
                    f"local board port {self.requested_port} is already in use",
                    hint="pick another --local-port, or leave it out for a free one",
                ) from None
            raise BoardError(
                f"cannot start the local board on {self.host}:{self.requested_port}: {exc.strerror}"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        line = f"[{self.host}]:{self.port} {host_key.export_public_key('openssh').decode().strip()}\n"
        self.known_hosts.write_text(line)

    def start(self) -> "LocalBoard":
        (self.home / ".bin").mkdir(parents=True, exist_ok=True)
        python = self.home / ".bin" / "python3"
        # a wrapper, not a symlink: a venv's interpreter finds its pyvenv.cfg (and so its packages)
        # next to the path it is started by, and a symlink elsewhere would start the bare base Python
        wrapper = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n'
        if python.is_symlink() or not python.exists() or python.read_text() != wrapper:
            python.unlink(missing_ok=True)
            python.write_text(wrapper)
            python.chmod(0o755)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="edgeopt-local-board", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._loop is not None:
            if self._server is not None:

                async def close() -> None:
                    self._server.close()
                    await self._server.wait_closed()
                    for conn in list(self._connections):  # close() above only stops listening
                        conn.close()
                        await conn.wait_closed()
                    # let connection handlers finish their cancellation before the loop stops
                    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)

                try:
                    asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
                except Exception:
                    pass
                self._server = None
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self._loop.close()
            self._loop = None
        shutil.rmtree(self._keys, ignore_errors=True)
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> "LocalBoard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
