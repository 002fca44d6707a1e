"""Board names -> a running, reachable board (a registry keyed by kind)."""
from __future__ import annotations

import contextlib
import re
import socket
from pathlib import Path
from typing import Iterator

from .deploy import BoardSpec
from .errors import BoardError, UsageError

_SSH = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>[A-Za-z0-9_.\-]+|\[[0-9a-fA-F:]+\])(?::(?P<port>\d+))?$")


@contextlib.contextmanager
def _local(*, local_port: int = 0, **_: object) -> Iterator[BoardSpec]:
    from board.local import LocalBoard

    with LocalBoard(port=local_port) as board:
        yield BoardSpec(
            kind="local",
            host=board.host,
            port=board.port,
            user=board.user,
            identity_file=board.client_key,
            known_hosts=board.known_hosts,  # we made the key, so we know it: never auto-added
            use_ssh_agent=False,
        )


BOARD_KINDS = {"local": _local}


def check_board(name: str, *, local_port: int = 0) -> None:
    """Fail fast, before any expensive stage, on a board name we cannot read or a busy port."""
    if name == "local":
        if local_port:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", local_port))
                except OSError:
                    raise BoardError(
                        f"local board port {local_port} is already in use",
                        hint="pick another --local-port, or leave it out for a free one",
                    ) from None
        return
    if name not in BOARD_KINDS and not _SSH.match(name):
        raise UsageError(f"cannot read board {name!r}", hint=f"use {' or '.join(BOARD_KINDS)} or user@host[:port]")


@contextlib.contextmanager
def open_board(name: str, *, local_port: int = 0, trust_new_host: bool = False,
               known_hosts: Path | None = None) -> Iterator[BoardSpec]:
    """`local` (the embedded SSH board) or `user@host[:port]` (a real board over SSH)."""
    if name in BOARD_KINDS:
        with BOARD_KINDS[name](local_port=local_port) as spec:
            yield spec
        return
    m = _SSH.match(name)
    if not m:
        raise UsageError(
            f"cannot read board {name!r}", hint=f"use {' or '.join(BOARD_KINDS)} or user@host[:port]"
        )
    yield BoardSpec(
        kind="ssh",
        host=m["host"].strip("[]"),
        port=int(m["port"] or 22),
        user=m["user"],
        known_hosts=known_hosts,
        trust_new_host=trust_new_host,
    )
