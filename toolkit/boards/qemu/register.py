"""Make a running emulated board reachable the normal way: its host keys in the toolkit's own
known_hosts (we built the image, so we know them: nothing is auto-accepted) and a
[boards.NAME] table in the user's boards.toml. Both are marked, and `down` removes exactly
what `up` wrote."""

from __future__ import annotations

import os
from pathlib import Path

from edgeopt.errors import BoardError, HostKeyError

from ..config import config_dir, toolkit_known_hosts, user_known_hosts

MARK = "edgeopt-qemu"


def host_key_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _lines(p: Path) -> list[str]:
    try:
        return p.read_text().splitlines()
    except FileNotFoundError:
        return []


def _write(p: Path, lines: list[str]) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".edgeopt-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    os.replace(tmp, p)


def _tag(mode: str) -> str:
    return f"{MARK}-{mode}"


def record_host_keys(mode: str, host: str, port: int, keys: list[str]) -> None:
    """Refuses (HostKeyError) if another key is already known for that address: that would be
    a CHANGED key on every connection."""
    name = host_key_name(host, port)
    for f in (user_known_hosts(), toolkit_known_hosts()):
        for line in _lines(f):
            fields = line.split()
            if (
                len(fields) >= 3
                and name in fields[0].split(",")
                and not (len(fields) > 3 and fields[3].startswith(MARK))
            ):
                if f"{fields[1]} {fields[2]}" not in keys:
                    raise HostKeyError(
                        f"{f} already holds another host key for {name}",
                        hint=f"pick another --port, or remove it: ssh-keygen -R '{name}' -f {f}",
                    )
    forget_host_keys(mode)
    kh = toolkit_known_hosts()
    _write(kh, _lines(kh) + [f"{name} {k} {_tag(mode)}" for k in keys])


def forget_host_keys(mode: str) -> None:
    kh = toolkit_known_hosts()
    lines = _lines(kh)
    keep = [line for line in lines if not (len(line.split()) > 3 and line.split()[3] == _tag(mode))]
    if keep != lines:
        if any(line.strip() for line in keep):
            _write(kh, keep)
        else:  # it held only what `up` wrote
            kh.unlink()


def boards_toml() -> Path:
    return config_dir() / "boards.toml"


def _block_bounds(mode: str) -> tuple[str, str]:
    return (f"# >>> {_tag(mode)}: written by `edgeopt board qemu up`, removed by `down`", f"# <<< {_tag(mode)}")


def write_board(mode: str, name: str, *, host: str, port: int, user: str, identity_file: Path, target: str) -> None:
    remove_board(mode)
    path = boards_toml()
    lines = _lines(path)
    if any(line.strip() in (f"[boards.{name}]", f'[boards."{name}"]') for line in lines):
        raise BoardError(
            f"{path} already has a [boards.{name}] table of its own; not overwritten",
            hint="rename or remove that table, then run `edgeopt board qemu up` again",
        )
    begin, end = _block_bounds(mode)
    block = [
        begin,
        f"[boards.{name}]",
        f'host = "{host}"',
        f"port = {port}",
        f'user = "{user}"',
        f'target = "{target}"',
        f'identity_file = "{identity_file}"',
        end,
    ]
    _write(path, lines + block)


def remove_board(mode: str) -> None:
    path = boards_toml()
    lines = _lines(path)
    begin, end = _block_bounds(mode)
    out, inside = [], False
    for line in lines:
        if line == begin:
            inside = True
        elif inside and line == end:
            inside = False
        elif not inside:
            out.append(line)
    if out != lines:
        if any(line.strip() for line in out):
            _write(path, out)
        else:
            path.unlink()
