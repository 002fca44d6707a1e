"""Stages shared by several settings are computed once: each stage's output is a directory keyed
by the content hash of its inputs (the parent stage's key + this stage's options), built under an
exclusive lock (fcntl, stdlib: the trials of one sweep share a file system) into a temporary
directory and renamed into place when complete, so a killed trial never leaves half a stage.
Every build and reuse is appended to events.jsonl (what the tests and the report count)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

DONE = ".done"


def stage_key(kind: str, **inputs) -> str:
    from importlib.metadata import version

    doc = {"stage": kind, "edgeopt": version("edgeopt"), **inputs}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:24]


class StageCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        path = self.root / ".locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released by the kernel when a killed holder's file closes
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _event(self, kind: str, key: str, event: str, seconds: float = 0.0) -> None:
        line = json.dumps(
            {
                "stage": kind,
                "key": key,
                "event": event,
                "seconds": round(seconds, 3),
                "pid": os.getpid(),
                "time": time.time(),
            }
        )
        with open(self.root / "events.jsonl", "a") as f:  # one short line per write: appends stay whole
            f.write(line + "\n")

    def get(self, kind: str, key: str, build: Callable[[Path], None]) -> Path:
        """The directory of stage `kind` for `key`: built by `build(tmp_dir)` the first time."""
        final = self.root / kind / key
        if (final / DONE).is_file():
            self._event(kind, key, "reused")
            return final
        with self._lock(f"{kind}-{key}"):
            if (final / DONE).is_file():  # another trial built it while we waited
                self._event(kind, key, "reused")
                return final
            tmp = self.root / kind / f".tmp-{key}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            start = time.perf_counter()
            try:
                build(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            (tmp / DONE).write_text(key + "\n")
            shutil.rmtree(final, ignore_errors=True)  # a leftover without .done
            os.replace(tmp, final)
            self._event(kind, key, "built", time.perf_counter() - start)
            return final

    def events(self) -> list[dict]:
        path = self.root / "events.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
