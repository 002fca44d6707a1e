"""What `up` started, so that `down` (and `status`) can find it: one JSON file per mode in
<cache>/qemu/run/<mode>/state.json, next to the run's own files (overlay, logs, pid file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import cache_dir
from . import MODES


def run_dir(mode: str) -> Path:
    return cache_dir() / "qemu" / "run" / mode


def load(mode: str) -> dict | None:
    p = run_dir(mode) / "state.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def save(mode: str, doc: dict) -> None:
    d = run_dir(mode)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "state.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, d / "state.json")


def clear(mode: str) -> None:
    try:
        (run_dir(mode) / "state.json").unlink()
    except FileNotFoundError:
        pass


def all_states() -> list[dict]:
    return [s for s in (load(m) for m in MODES) if s]
