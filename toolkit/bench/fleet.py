"""N boards in parallel (one thread each) with one combined result. A board that fails
(unreachable, host key, agent failure...) is recorded with its one-line error and exit code; the
others' results are kept. Boards that share one host CPU are marked: their latencies disturb
each other."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from edgeopt.errors import EdgeoptError

from ..boards.config import load_groups
from ..boards.names import check_board
from .runner import BenchOptions, HostInputs, bench_board
from .variants import Variant

THIS_MACHINE = "this machine (loopback)"


def expand_boards(names: list[str]) -> list[str]:
    """--board arguments -> board names: a [groups] entry of boards.toml expands to its boards.
    A name given twice is benchmarked once."""
    groups = load_groups()
    out: list[str] = []
    for n in names or ["local"]:
        for b in groups.get(n, [n]):
            if b not in out:
                out.append(b)
    for b in out:
        check_board(b)  # a typo is a usage error for the whole command, before anything runs
    return out


def _own_addresses() -> set[str]:
    addrs = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            addrs.add(info[4][0])
    except OSError:
        pass
    return addrs


def cpu_identity(host: str) -> str:
    """Which CPU a board address runs on, as far as the host can tell: loopback and this
    machine's own addresses are THIS_MACHINE; otherwise the resolved IP address(es)."""
    try:
        addrs = sorted({i[4][0] for i in socket.getaddrinfo(host, None)})
    except OSError:
        return f"unresolved:{host}"
    own = _own_addresses()
    if any(ipaddress.ip_address(a.split("%")[0]).is_loopback or a in own for a in addrs):
        return THIS_MACHINE
    return ",".join(addrs)


def mark_shared(boards: list[dict]) -> None:
    """Boards with the same cpu_identity get `shares_cpu_with` (the other boards' names)."""
    by_cpu: dict[str, list[str]] = {}
    for b in boards:  # only boards that ran: a failed one disturbed no one
        if b.get("cpu_identity") and b.get("ok"):
            by_cpu.setdefault(b["cpu_identity"], []).append(b["name"])
    for b in boards:
        others = [n for n in by_cpu.get(b.get("cpu_identity"), []) if n != b["name"]]
        b["shares_cpu_with"] = others if b.get("ok") else []


def _failure(name: str, exc: BaseException) -> dict:
    if isinstance(exc, EdgeoptError):
        return {
            "name": name,
            "ok": False,
            "error": str(exc),
            "error_class": type(exc).__name__,
            "exit_code": exc.exit_code,
        }
    return {
        "name": name,
        "ok": False,
        "error": f"internal error: {type(exc).__name__}: {exc}",
        "error_class": type(exc).__name__,
        "exit_code": 70,
    }


def run_fleet(
    boards: list[str],
    variants: list[Variant],
    inputs: HostInputs,
    opts: BenchOptions,
    step: Callable[[str, str], None] = lambda board, s: None,
) -> list[dict]:
    """One thread per board; results in the order the boards were named."""
    results: dict[str, dict] = {}
    lock = threading.Lock()

    def one(name: str) -> None:
        identity = {"cpu_identity": None, "address": None}

        def on_spec(spec) -> None:
            identity["address"] = spec.address
            identity["cpu_identity"] = cpu_identity(spec.host)

        started = time.time()
        try:
            doc = bench_board(name, variants, inputs, opts, step=lambda s: step(name, s), on_spec=on_spec)
            step(name, "done")
        except BaseException as exc:  # noqa: BLE001  (one board's failure must not lose the others)
            if isinstance(exc, KeyboardInterrupt):
                raise
            doc = _failure(name, exc)
            doc.update({k: v for k, v in identity.items() if v})
            if not doc.get("cpu_identity"):
                doc["cpu_identity"] = _guess_identity(name)
            step(name, "FAILED")
        else:
            doc["cpu_identity"] = identity["cpu_identity"]
        doc["started"], doc["finished"] = started, time.time()  # epoch seconds: when this board's thread ran
        with lock:
            results[name] = doc

    if len(boards) == 1:
        one(boards[0])
    else:
        with ThreadPoolExecutor(max_workers=len(boards), thread_name_prefix="edgeopt-board") as pool:
            for f in [pool.submit(one, b) for b in boards]:
                f.result()
    out = [results[b] for b in boards]
    mark_shared(out)
    return out


def _guess_identity(name: str) -> str | None:
    """The CPU identity of a board that failed before its spec existed (best effort)."""
    try:
        if name == "local":
            return THIS_MACHINE
        from ..boards.names import board_spec

        return cpu_identity(board_spec(name).host)
    except (EdgeoptError, OSError):
        return None


def exit_code(boards: list[dict]) -> int:
    """0: every board ok. 9: some boards failed, the report holds the others'. All failed: the
    first failure's own exit code (7 board, 8 host key, 6 bundle...)."""
    failed = [b for b in boards if not b["ok"]]
    if not failed:
        return 0
    if len(failed) < len(boards):
        return 9
    return failed[0]["exit_code"]
