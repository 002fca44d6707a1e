"""Board names -> a running, reachable board (a registry keyed by kind)."""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator

from .deploy import BoardSpec
from .errors import UsageError

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
