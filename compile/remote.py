"""Measuring tuning candidates on boards, with TVM's own RPC parts.

On each board, TVM's RPC server (`python -m tvm.exec.rpc_server`, from the TVM the board already
has) listens on the board's loopback; the host reaches it through a port forward of the verified
SSH connection (edgeopt.toolkit.boards.tuning makes both). Here, on the host's loopback: TVM's RPC
tracker, and one registration per board that offers the tracker that board's forwarded port, one
measurement at a time, and withdraws it when the board drops out. MetaSchedule's RPCRunner asks
the tracker for a board per candidate, so a farm measures in parallel, one candidate per board.

The board's server is started without a tracker of its own: it accepts any client that presents
its key (`client:<matchkey>`), and the registration here hands that key to the tracker. That keeps
the board from ever connecting to the host, and the port the tracker hands out is the host's end
of the forward, not the board's (on a real board the two loopbacks are different machines)."""

from __future__ import annotations

import logging
import re
import secrets
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Callable

from edgeopt.errors import BoardError

log = logging.getLogger("edgeopt.tune")

HOST = "127.0.0.1"
SERVER_PORTS = (20000, 60000)  # the board's server binds the first free port of a random window here
SERVER_PORT_WINDOW = 200
BIND_LINE = re.compile(r"bind to 127\.0\.0\.1:(\d+)")
LOADED_LINE = "load_module"  # the server logs one per candidate it loads
POLL_S = 0.5  # how often a registration checks its board and the tracker
UNUSED_S = 6.0  # a board handed to a runner that never connected is offered again after this


def server_argv(python: str, key: str) -> list[str]:
    """The command that starts TVM's RPC server on a board, on its loopback only."""
    start = SERVER_PORTS[0] + secrets.randbelow(SERVER_PORTS[1] - SERVER_PORTS[0])
    return [
        python,
        "-m",
        "tvm.exec.rpc_server",
        "--host",
        HOST,
        "--port",
        str(start),
        "--port-end",
        str(start + SERVER_PORT_WINDOW),
        "--key",
        key,
    ]


def new_keys(n: int) -> tuple[str, list[str]]:
    """The tracker key of one tuning run, and each board's match key (its server's --key)."""
    key = f"edgeopt-{secrets.token_hex(4)}"
    return key, [f"{key}:{secrets.token_hex(8)}" for _ in range(n)]


@dataclass
class Endpoint:
    """One board as the tracker sees it: the host's end of the forward to its RPC server."""

    name: str
    port: int  # on the host's loopback: a forward to the board's server
    matchkey: str  # the key the board's server was started with
    alive: Callable[[], bool]  # the SSH connection and the server are up
    busy: Callable[[], bool]  # a session is open through the forward
    sessions: Callable[[], int]  # sessions carried through the forward so far
    loaded: Callable[[], int]  # candidates the board's server says it loaded
    address: str = ""
    board_port: int = 0  # the server's port on the board's own loopback
    dropped: str | None = None  # why it left the pool, if it did


def _alloc_argument(session, device, args_info, alloc_repeat: int):
    """A candidate's arguments filled with random data made here and copied to the board:
    MetaSchedule's default fills them on the board with `tvm.contrib.random`, which the board's
    runtime-only TVM (TVM_USE_RUNTIME_LIB=1, how the board imports fast) does not have."""
    import numpy as np
    from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common

    rng = np.random.default_rng(0)

    def fill(arg) -> None:
        dtype, shape = str(arg.dtype), tuple(int(d) for d in arg.shape)
        if dtype == "bool":
            data = rng.integers(0, 2, shape).astype(bool)
        elif "float" in dtype:
            data = rng.uniform(-1.0, 1.0, shape).astype(dtype)
        else:
            info = np.iinfo(dtype)
            data = rng.integers(max(int(info.min), -128), min(int(info.max), 127) + 1, shape).astype(dtype)
        arg.copyfrom(data)

    return alloc_argument_common(fill, device, args_info, alloc_repeat)


def _send(sock: socket.socket, data) -> None:
    from tvm.rpc import base

    base.sendjson(sock, data)


def _recv(sock: socket.socket):
    from tvm.rpc import base

    return base.recvjson(sock)


class _Registration:
    """Offers one board to the tracker, one session at a time, as TVM's own server does when it
    registers itself (PUT, and PUT again when the session is over); withdraws it by closing the
    tracker connection (the tracker then drops what it was offered) when the board drops out."""

    def __init__(self, pool: "BoardPool", ep: Endpoint) -> None:
        self.pool = pool
        self.ep = ep
        self.sock: socket.socket | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"edgeopt-register-{ep.name}", daemon=True)

    def _connect(self) -> None:
        from tvm.rpc import base
        from tvm.rpc.base import TrackerCode

        sock = socket.create_connection((HOST, self.pool.tracker_port), timeout=30)
        sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        if struct.unpack("<i", base.recvall(sock, 4))[0] != base.RPC_TRACKER_MAGIC:
            raise BoardError(f"{HOST}:{self.pool.tracker_port} is not TVM's RPC tracker")
        # the key in the info makes the tracker drop this board's offers when the connection closes
        _send(sock, [TrackerCode.UPDATE_INFO, {"key": "server:" + self.pool.key, "addr": [HOST, self.ep.port]}])
        assert _recv(sock) == TrackerCode.SUCCESS
        self.sock = sock

    def _put(self) -> None:
        from tvm.rpc.base import TrackerCode

        _send(self.sock, [TrackerCode.PUT, self.pool.key, [self.ep.port, self.ep.matchkey], HOST])
        assert _recv(self.sock) == TrackerCode.SUCCESS

    def _pending(self) -> bool:
        from tvm.rpc.base import TrackerCode

        _send(self.sock, [TrackerCode.GET_PENDING_MATCHKEYS])
        return self.ep.matchkey in _recv(self.sock)

    def start(self) -> None:
        self._connect()
        self._put()
        self.thread.start()

    def _loop(self) -> None:
        seen = self.ep.sessions()
        unused = 0.0
        try:
            while not self._stop.wait(POLL_S):
                if not self.ep.alive():
                    self.pool._drop(self.ep, "its SSH connection or RPC server ended")
                    return
                if self._pending() or self.ep.busy():
                    unused = 0.0
                    continue
                # handed out and not in use: the session is over, or the runner never came
                done = self.ep.sessions()
                unused += POLL_S
                if done != seen or unused >= UNUSED_S:
                    seen, unused = done, 0.0
                    self._put()
        except (OSError, AssertionError, ValueError) as exc:
            if not self._stop.is_set():
                self.pool._drop(self.ep, f"the tracker connection failed: {exc or type(exc).__name__}")
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


@dataclass
class BoardPool:
    """Boards of one kind measuring for one tuning run: TVM's tracker on the host's loopback and
    one registration per board. `identity` (what the boards report: CPU, features, cores, TVM)
    goes into the tuning records' key. `emulated`: the boards are QEMU (longer sessions)."""

    identity: dict
    endpoints: list[Endpoint]
    emulated: bool = False
    session_timeout_s: float = 60.0
    key: str = ""
    tracker_port: int = 0
    boards: list = field(default_factory=list, repr=False)  # the toolkit's handles, for inspection
    _tracker: object = field(default=None, repr=False)
    _registrations: list = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> "BoardPool":
        from tvm.rpc.tracker import Tracker

        for _ in range(5):  # a free port, then TVM's tracker on exactly that one
            with socket.socket() as s:
                s.bind((HOST, 0))
                port = s.getsockname()[1]
            try:
                self._tracker = Tracker(host=HOST, port=port, port_end=port + 1, silent=True)
                break
            except Exception as exc:  # taken in between: another one
                log.debug("tracker on %d: %s", port, exc)
        if self._tracker is None:
            raise BoardError(f"cannot start TVM's RPC tracker on {HOST}")
        self.tracker_port = self._tracker.port
        try:
            for ep in self.endpoints:
                reg = _Registration(self, ep)
                reg.start()
                self._registrations.append(reg)
        except BaseException:
            self.close()
            raise
        return self

    def _drop(self, ep: Endpoint, why: str) -> None:
        with self._lock:
            if ep.dropped is not None:
                return
            ep.dropped = why
            left = len(self.alive())
        log.warning("board %s dropped out of the tuning pool (%s); tuning goes on with %d board(s)", ep.name, why, left)

    def alive(self) -> list[Endpoint]:
        return [ep for ep in self.endpoints if ep.dropped is None]

    def runner(self):
        from tvm.s_tir import meta_schedule as ms

        config = ms.runner.RPCConfig(
            tracker_host=HOST,
            tracker_port=self.tracker_port,
            tracker_key=self.key,
            session_priority=1,
            session_timeout_sec=int(self.session_timeout_s),
        )
        # emulated arithmetic is hundreds of times slower: fewer repetitions per candidate
        evaluator = ms.runner.EvaluatorConfig(
            number=3, repeat=1, min_repeat_ms=0 if self.emulated else 100, enable_cpu_cache_flush=False
        )
        return ms.runner.RPCRunner(config, evaluator, f_alloc_argument=_alloc_argument, max_workers=len(self.endpoints))

    def report(self) -> list[dict]:
        """Per board: the sessions carried to it and the candidates it loaded (its own log)."""
        return [
            {
                "name": ep.name,
                "address": ep.address,
                "sessions": ep.sessions(),
                "measured": ep.loaded(),
                **({"dropped": ep.dropped} if ep.dropped else {}),
            }
            for ep in self.endpoints
        ]

    def close(self) -> None:
        for reg in self._registrations:
            reg.close()
        for reg in self._registrations:
            if reg.thread.is_alive():
                reg.thread.join(5)
        if self._tracker is not None:
            try:
                self._tracker.terminate()
            except Exception as exc:
                log.debug("stopping the tracker: %s", exc)
            self._tracker = None
