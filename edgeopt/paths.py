"""Where edgeopt keeps its own files on this machine: one place for every part (a leaf: it
imports only the standard library, so compile/, toolkit/ and board-facing code may all use it).

    config  $EDGEOPT_CONFIG_DIR, else platformdirs' user config dir when that package is
            installed anyway, else $XDG_CONFIG_HOME/edgeopt, else ~/.config/edgeopt
    cache   $EDGEOPT_CACHE_DIR, else $XDG_CACHE_HOME/edgeopt, else ~/.cache/edgeopt
    data    $EDGEOPT_DATA_DIR, else $XDG_DATA_HOME/edgeopt, else ~/.local/share/edgeopt
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "edgeopt"


def _dir(own: str, xdg: str, fallback: tuple[str, ...]) -> Path:
    if os.environ.get(own):
        return Path(os.environ[own]).expanduser()
    base = os.environ.get(xdg) or str(Path.home().joinpath(*fallback))
    return Path(base) / APP


def config_dir() -> Path:
    if os.environ.get("EDGEOPT_CONFIG_DIR"):
        return Path(os.environ["EDGEOPT_CONFIG_DIR"]).expanduser()
    try:  # only if it is installed anyway; no new dependency for one path
        import platformdirs  # type: ignore

        return Path(platformdirs.user_config_dir(APP))
    except ImportError:
        pass
    return _dir("EDGEOPT_CONFIG_DIR", "XDG_CONFIG_HOME", (".config",))


def cache_dir() -> Path:
    return _dir("EDGEOPT_CACHE_DIR", "XDG_CACHE_HOME", (".cache",))


def data_dir() -> Path:
    return _dir("EDGEOPT_DATA_DIR", "XDG_DATA_HOME", (".local", "share"))
