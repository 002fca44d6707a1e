"""Boards that time tuning candidates: `edgeopt compile --tune --board B [--board C ...]`.

For each board: the verified SSH connection, the agent's `info` (the board's identity: CPU model
and features, cores, TVM version), TVM's RPC server started from the board's own TVM on its
loopback only, on a channel of its own under the watchdog, and a port forward of that connection
from the host's loopback to it. compile.remote then offers the boards to TVM's RPC tracker on the
host's loopback, and MetaSchedule's RPC runner measures there. On the way out (success, failure,
Ctrl-C, a dropped session) each server's channel is closed, which stops its process group on the
board; the board's process list is then checked for what is left."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from edgeopt.compile.remote import BIND_LINE, LOADED_LINE, BoardPool, Endpoint, new_keys, server_argv
from edgeopt.compile.targets import Target

from edgeopt.errors import BoardError, UsageError

from .config import load_groups
from .deploy import STOP_GRACE_S, BoardSpec, Connection, Forward, RemoteProcess
from .names import check_board, open_board
from .ops import info as board_info

log = logging.getLogger("edgeopt.tune")

REAL_SESSION_S = 60.0  # one candidate's RPC session (upload, load, time) on a board
EMULATED_SESSION_S = 300.0
LEFT_CHECK_S = 10.0 + STOP_GRACE_S  # how long a stopped server may take to be gone from the board
# prints the pids whose command line holds argv[1] + argv[2] (split so this one never matches)
_FIND = (
    "import os, sys\nkey = sys.argv[1] + sys.argv[2]\n"
    "for p in os.listdir('/proc'):\n"
    "    if p.isdigit() and p != str(os.getpid()):\n"
    "        try: c = open('/proc/' + p + '/cmdline', 'rb').read().decode(errors='replace')\n"
    "        except OSError: continue\n"
    "        if key in c: print(p)\n"
)


def identity(board: dict) -> dict:
    """What makes two boards the same kind for tuning records (from the agent's `info`)."""
    return {
        "arch": board.get("arch"),
        "cpu": board.get("cpu"),
        "cpu_features": sorted(board.get("cpu_features") or []),
        "cores": board.get("cores"),
        "tvm": board.get("tvm"),
    }


def expand(names: list[str]) -> list[str]:
    """`--board` values, a [groups] entry of boards.toml replaced by its boards. `local` may be
    named more than once (each is an embedded board of its own); any other board only once."""
    groups = load_groups()
    out: list[str] = []
    for name in names:
        for member in groups.get(name, [name]):
            if member in out and member != "local":
                raise UsageError(
                    f"board {member!r} is named twice for tuning",
                    hint="each board measures one candidate at a time; name each board once",
                )
            out.append(member)
    if not out:
        raise UsageError("tuning on boards needs at least one --board")
    return out


def check_kind(target: Target, name: str, board: dict) -> None:
    """Refuse a board the target's code cannot run on, before tuning starts."""
    if board.get("arch") != target.arch:
        raise BoardError(
            f"board {name} is {board.get('arch')}, but target {target.name!r} is {target.arch}; refused before tuning",
            hint="tune on a board of the target's architecture (`edgeopt targets` lists them)",
        )
    need = set(target.describe()["required_cpu_flags"])
    have = set(board.get("cpu_features") or [])
    missing = sorted(need - have) if have else []
    if missing:
        raise BoardError(
            f"board {name} lacks CPU features target {target.name!r} needs ({', '.join(missing)}); "
            "refused before tuning",
            hint="tune on a board of that kind, or compile for the target that matches this board",
        )
    if not board.get("tvm"):
        raise BoardError(
            f"board {name} has no TVM: tuning runs TVM's RPC server there", hint="install it with `edgeopt board setup`"
        )


@dataclass
class _Board:
    name: str
    conn: Connection
    matchkey: str
    server: RemoteProcess | None = None
    forward: Forward | None = None  # the host's end of the way to the server (the only one: loopback)
    loaded: int = 0
    left: list[int] = field(default_factory=list)  # server processes found on the board after stopping it

    def count(self, line: str) -> None:
        if LOADED_LINE in line:
            self.loaded += 1

    def left_behind(self) -> list[int]:
        code, out, _ = self.conn.run(
            [self.conn.python(), "-c", _FIND, self.matchkey[:8], self.matchkey[8:]],
            timeout_s=self.conn.spec.timeout_for("version"),
        )
        return [int(p) for p in out.split()] if code == 0 else []

    def stop(self) -> None:
        """Close the server's channel (the watchdog stops its process group), then check the board."""
        if self.server is None:
            return
        self.server.stop()
        if not self.conn.active:
            return  # a dropped board: its sshd ended the session, and the watchdog with it
        deadline = time.monotonic() + LEFT_CHECK_S
        try:
            while True:
                self.left = self.left_behind()
                if not self.left or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        except BoardError as exc:
            log.debug("checking %s for a left server: %s", self.name, exc)
        if self.left:
            log.warning(
                "TVM's RPC server left %d process(es) on board %s (pids %s)",
                len(self.left),
                self.name,
                " ".join(map(str, self.left)),
            )


def _server_path(conn: Connection) -> dict[str, str]:
    """TVM's RPC server imports cloudpickle, which the board runtime (`edgeopt board setup`, the
    emulated board's image) does not include: a board without it gets this machine's copy (pure
    Python) uploaded into the store, on the server's PYTHONPATH only."""
    import cloudpickle

    code, _, _ = conn.run([conn.python(), "-c", "import cloudpickle"], timeout_s=conn.spec.timeout_for("import"))
    if code == 0:
        return {}
    src = Path(cloudpickle.__file__).parent
    site = conn.root() / "rpc" / f"cloudpickle-{cloudpickle.__version__}"
    for f in sorted(src.glob("*.py")):
        conn.upload(f, site / "cloudpickle" / f.name)
    return {"PYTHONPATH": str(site)}


def _start_server(b: _Board) -> int:
    """Start TVM's RPC server on the board's loopback; return the port it bound there."""
    conn = b.conn
    argv = server_argv(conn.python(), b.matchkey)
    b.server = conn.start(
        argv,
        env={"TVM_USE_RUNTIME_LIB": "1", **_server_path(conn), **conn.spec.env},
        what="TVM's RPC server",
        on_line=b.count,
    )
    m = b.server.wait_line(BIND_LINE, conn.spec.timeout_for("import"))
    if m is None:
        last = (list(b.server.lines) or ["(no output)"])[-1][:300]
        raise BoardError(
            f"TVM's RPC server did not start on board {b.name} ({conn.spec.address}): {last}",
            hint="check the board's TVM with `edgeopt board info`; `edgeopt board setup` installs it",
        )
    return int(m.group(1))


@contextlib.contextmanager
def tuning_boards(
    names: list[str],
    target: Target,
    *,
    trust_new_host: bool = False,
    known_hosts: Path | None = None,
    local_port: int = 0,
) -> Iterator[BoardPool]:
    """A started compile.remote.BoardPool over the named boards (a [groups] name counts as its
    boards); everything it started is stopped on the way out, however that comes."""
    names = expand(names)
    for n in names:
        check_board(n, local_port=local_port)
    with contextlib.ExitStack() as stack:
        specs = [
            stack.enter_context(
                open_board(
                    n, local_port=local_port if i == 0 else 0, trust_new_host=trust_new_host, known_hosts=known_hosts
                )
            )
            for i, n in enumerate(names)
        ]
        with board_pool(specs, target) as pool:
            yield pool


@contextlib.contextmanager
def board_pool(specs: list[BoardSpec], target: Target) -> Iterator[BoardPool]:
    """The pool over boards already running (tuning_boards starts them from names)."""
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(Connection(s)) for s in specs]
        named = [s.name or s.address for s in specs]
        labels = [n if named.count(n) == 1 else f"{n}@{s.port}" for n, s in zip(named, specs)]
        kinds = []
        for label, conn in zip(labels, conns):
            facts = board_info(conn)["board"]
            check_kind(target, label, facts)
            kinds.append(identity(facts))
        if any(k != kinds[0] for k in kinds):
            odd = next(label for label, k in zip(labels, kinds) if k != kinds[0])
            raise BoardError(
                f"boards {labels[0]} and {odd} are not the same kind (CPU, features, cores or TVM differ); "
                "a farm tunes for one kind of board",
                hint="tune each kind of board in a run of its own (records are kept per kind)",
            )
        key, matchkeys = new_keys(len(conns))
        boards = [_Board(label, conn, mk) for label, conn, mk in zip(labels, conns, matchkeys)]
        endpoints = []
        for b in boards:
            stack.callback(b.stop)
            port = _start_server(b)
            fwd = b.forward = b.conn.forward(port)
            stack.callback(fwd.close)
            endpoints.append(
                Endpoint(
                    name=b.name,
                    port=fwd.port,
                    matchkey=b.matchkey,
                    address=b.conn.spec.address,
                    alive=(lambda b=b: b.conn.active and b.server.alive),
                    busy=(lambda f=fwd: f.busy),
                    sessions=(lambda f=fwd: f.sessions),
                    loaded=(lambda b=b: b.loaded),
                    board_port=port,
                )
            )
        emulated = any(s.emulated for s in specs)
        pool = BoardPool(
            identity=kinds[0],
            endpoints=endpoints,
            emulated=emulated,
            key=key,
            session_timeout_s=EMULATED_SESSION_S if emulated else REAL_SESSION_S,
            boards=boards,
        )
        stack.callback(pool.close)
        pool.start()
        yield pool
