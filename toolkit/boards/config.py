"""Where the toolkit keeps its own files, and boards by name (boards.toml).

    [boards.rzv2l]
    host = "192.168.1.50"
    user = "root"
    port = 22
    target = "cortex-a55"
    identity_file = "~/.ssh/id_ed25519"
    # optional: python = "/usr/bin/python3", remote_root = "/data/edgeopt"
    # timeout = 900            (seconds for each agent command; default: per verb, x10 emulated)
    # identities_only = false  (also offer the ssh-agent's and ~/.ssh's keys, not only identity_file)

A fleet is a group of boards, benchmarked in parallel by `edgeopt bench --board lab`:

    [groups]
    lab = ["rzv2l", "pi4", "local"]

`./boards.toml` in the working directory wins over the one in the user config dir
(`$EDGEOPT_CONFIG_DIR`, else `$XDG_CONFIG_HOME/edgeopt`, else `~/.config/edgeopt`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from edgeopt import paths
from edgeopt.errors import InputError

BOARD_KEYS = {
    "host",
    "user",
    "port",
    "target",
    "identity_file",
    "python",
    "remote_root",
    "known_hosts",
    "timeout",
    "identities_only",
}


def config_dir() -> Path:
    return paths.config_dir()


def cache_dir() -> Path:
    return paths.cache_dir()


def toolkit_known_hosts() -> Path:
    """The toolkit's own known_hosts: keys recorded with --trust-new-host go here."""
    return config_dir() / "known_hosts"


def user_known_hosts() -> Path:
    return Path.home() / ".ssh" / "known_hosts"


def user_ssh_config() -> Path:
    return Path.home() / ".ssh" / "config"


@dataclass(frozen=True)
class BoardEntry:
    name: str
    host: str
    source: Path
    user: str | None = None
    port: int | None = None
    target: str | None = None
    identity_file: Path | None = None
    python: str | None = None
    remote_root: str | None = None
    known_hosts: Path | None = None
    timeout_s: float | None = None
    identities_only: bool = True


def boards_files() -> list[Path]:
    """In precedence order: ./boards.toml first."""
    return [Path.cwd() / "boards.toml", config_dir() / "boards.toml"]


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML: {exc}") from None


def _read(path: Path) -> dict[str, BoardEntry]:
    boards = _toml(path).get("boards", {})
    if not isinstance(boards, dict):
        raise InputError(f"{path}: [boards] must be a table of [boards.NAME] tables")
    out = {}
    for name, table in boards.items():
        if not isinstance(table, dict):
            raise InputError(f"{path}: boards.{name} must be a table")
        unknown = sorted(set(table) - BOARD_KEYS)
        if unknown:
            raise InputError(
                f"{path}: boards.{name} has unknown key(s) {', '.join(unknown)}",
                hint=f"known keys: {', '.join(sorted(BOARD_KEYS))}",
            )
        if not isinstance(table.get("host"), str) or not table["host"]:
            raise InputError(f'{path}: boards.{name} needs host = "..."')
        port = table.get("port")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise InputError(f"{path}: boards.{name}.port must be an integer 1-65535, got {port!r}")
        for key in ("user", "target", "identity_file", "python", "remote_root", "known_hosts"):
            if key in table and not isinstance(table[key], str):
                raise InputError(f"{path}: boards.{name}.{key} must be a string")
        timeout = table.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 86400
        ):
            raise InputError(
                f"{path}: boards.{name}.timeout must be a number of seconds, 0 < timeout <= 86400, got {timeout!r}"
            )
        if not isinstance(table.get("identities_only", True), bool):
            raise InputError(f"{path}: boards.{name}.identities_only must be true or false")
        if "password" in table:
            raise InputError(f"{path}: passwords are not read from files; use a key")
        out[name] = BoardEntry(
            name=name,
            host=table["host"],
            source=path,
            user=table.get("user"),
            port=port,
            target=table.get("target"),
            identity_file=Path(table["identity_file"]).expanduser() if table.get("identity_file") else None,
            python=table.get("python"),
            remote_root=table.get("remote_root"),
            known_hosts=Path(table["known_hosts"]).expanduser() if table.get("known_hosts") else None,
            timeout_s=float(timeout) if timeout is not None else None,
            identities_only=table.get("identities_only", True),
        )
    return out


def load_boards() -> dict[str, BoardEntry]:
    """Every named board; a name in ./boards.toml hides the same name in the config dir."""
    boards: dict[str, BoardEntry] = {}
    for path in reversed(boards_files()):
        if path.is_file():
            boards.update(_read(path))
    return boards


def load_groups() -> dict[str, list[str]]:
    """[groups] NAME = ["board", ...] from the boards.toml files (./boards.toml wins by name)."""
    groups: dict[str, list[str]] = {}
    for path in reversed(boards_files()):
        if not path.is_file():
            continue
        table = _toml(path).get("groups", {})
        if not isinstance(table, dict):
            raise InputError(f'{path}: [groups] must be a table of NAME = ["board", ...]')
        for name, members in table.items():
            if not isinstance(members, list) or not members or not all(isinstance(m, str) and m for m in members):
                raise InputError(f"{path}: groups.{name} must be a non-empty list of board names")
            groups[name] = list(members)
    return groups
