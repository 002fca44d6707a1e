"""Board names -> a running, reachable board: `local` (the embedded SSH board), a name from
boards.toml, or `user@host[:port]` (an alias from ~/.ssh/config works too)."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
from pathlib import Path
from typing import Iterator

from edgeopt.errors import BoardError, UsageError

from .config import load_boards
from .deploy import TIMEOUT_ENV, BoardSpec, apply_ssh_config
from .qemu.board import BOARD_KINDS as QEMU_KINDS  # qemu, qemu-system
from .qemu.board import check as _check_qemu

_SSH = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>[A-Za-z0-9_.\-]+|\[[0-9a-fA-F:]+\])(?::(?P<port>\d+))?$")


@contextlib.contextmanager
def _local(*, local_port: int = 0, **_: object) -> Iterator[BoardSpec]:
    from edgeopt.board.local import LocalBoard

    with LocalBoard(port=local_port) as board:
        yield BoardSpec(
            kind="local",
            name="local",
            host=board.host,
            port=board.port,
            user=board.user,
            identity_file=board.client_key,
            known_hosts=board.known_hosts,  # we made the key, so we know it: never auto-added
            use_ssh_agent=False,
        )


BOARD_KINDS = {"local": _local, **QEMU_KINDS}  # the boards edgeopt starts itself


def _hint() -> str:
    named = sorted(load_boards())
    return f"use {' or '.join(BOARD_KINDS)}, user@host[:port]" + (
        f", or a board from boards.toml ({', '.join(named)})" if named else ", or a [boards.NAME] in boards.toml"
    )


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
    if name in QEMU_KINDS:
        _check_qemu(name)
        return
    if name not in BOARD_KINDS and name not in load_boards() and not _SSH.match(name):
        raise UsageError(f"cannot read board {name!r}", hint=_hint())


def board_spec(name: str, *, trust_new_host: bool = False, known_hosts: Path | None = None) -> BoardSpec:
    """The spec of a remote board (not `local`): boards.toml first, then user@host[:port]; both
    through ~/.ssh/config (HostName, User, Port, IdentityFile)."""
    boards = load_boards()
    if name in boards:
        e = boards[name]
        spec = BoardSpec(
            kind="ssh",
            name=name,
            host=e.host,
            port=e.port or 22,
            user=e.user,
            identity_file=e.identity_file,
            known_hosts=known_hosts or e.known_hosts,
            python=e.python,
            target=e.target,
            trust_new_host=trust_new_host,
            command_timeout_s=e.timeout_s,
            identities_only=e.identities_only,
            **({"remote_root": e.remote_root} if e.remote_root else {}),
        )
        if e.identity_file is not None and not e.identity_file.is_file():
            raise UsageError(f"identity_file {e.identity_file} of board {name!r} ({e.source}) does not exist")
        return apply_ssh_config(spec, explicit_port=e.port is not None, explicit_user=e.user is not None)
    m = _SSH.match(name)
    if not m:
        raise UsageError(f"cannot read board {name!r}", hint=_hint())
    spec = BoardSpec(
        kind="ssh",
        name=name,
        host=m["host"].strip("[]"),
        port=int(m["port"] or 22),
        user=m["user"],
        known_hosts=known_hosts,
        trust_new_host=trust_new_host,
    )
    return apply_ssh_config(spec, explicit_port=m["port"] is not None, explicit_user=m["user"] is not None)


@contextlib.contextmanager
def open_board(
    name: str, *, local_port: int = 0, trust_new_host: bool = False, known_hosts: Path | None = None
) -> Iterator[BoardSpec]:
    """`local` (the embedded SSH board, started for the duration), a boards.toml name, or
    `user@host[:port]` (a real board over SSH)."""
    if name in BOARD_KINDS:
        with BOARD_KINDS[name](local_port=local_port) as spec:
            yield with_env_timeout(spec)
        return
    yield with_env_timeout(board_spec(name, trust_new_host=trust_new_host, known_hosts=known_hosts))


def env_timeout() -> float | None:
    """$EDGEOPT_BOARD_TIMEOUT in seconds, or None when unset."""
    import os

    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise UsageError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds between 0 and 86400")
    return value


def with_env_timeout(spec: BoardSpec) -> BoardSpec:
    """The environment variable wins over boards.toml (a --timeout flag wins over both)."""
    value = env_timeout()
    return dataclasses.replace(spec, command_timeout_s=value) if value is not None else spec


def with_options(spec: BoardSpec, **changes) -> BoardSpec:
    changes = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(spec, **changes) if changes else spec
