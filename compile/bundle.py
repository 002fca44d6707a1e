"""The compile stage's artifact: bundle/ = model.so + manifest.json, hashes verified on load."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import BundleError

SCHEMA = "edgeopt.bundle/1"
MANIFEST = "manifest.json"
LIBRARY = "model.so"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict

    @property
    def files(self) -> dict[str, dict]:
        return self.manifest["files"]

    @property
    def bytes(self) -> int:
        return sum(f["bytes"] for f in self.files.values()) + (self.path / MANIFEST).stat().st_size

    @property
    def id(self) -> str:
        """Content address: the sha256 of the manifest, which holds every file's sha256."""
        return sha256_file(self.path / MANIFEST)

    @property
    def library_sha256(self) -> str:
        return self.files[LIBRARY]["sha256"]

    @classmethod
    def write(cls, path: Path, manifest: dict) -> "Bundle":
        """Hash the files already in `path` into the manifest and write it."""
        files = {}
        for name in sorted(p.name for p in path.iterdir() if p.is_file() and p.name != MANIFEST):
            files[name] = {"sha256": sha256_file(path / name), "bytes": (path / name).stat().st_size}
        manifest = {"schema": SCHEMA, **manifest, "files": files}
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return cls(path, manifest)

    @classmethod
    def load(cls, path: Path) -> "Bundle":
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise BundleError(f"{path} is not a bundle: no {MANIFEST}", hint="run `edgeopt compile` to make one")
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as exc:
            raise BundleError(f"{mpath} is not valid JSON: {exc}") from exc
        if manifest.get("schema") != SCHEMA:
            raise BundleError(f"{mpath}: schema {manifest.get('schema')!r}, this edgeopt reads {SCHEMA!r}")
        for name, meta in manifest.get("files", {}).items():
            f = path / name
            if not f.is_file():
                raise BundleError(f"bundle {path} is missing {name}", hint="rebuild it with `edgeopt compile`")
            if sha256_file(f) != meta["sha256"]:
                raise BundleError(f"bundle file {f} does not match its sha256 in {MANIFEST}",
                                  hint="the file was changed or damaged; rebuild the bundle")
        return cls(path, manifest)


def replace_dir(new: Path, dest: Path) -> None:
    """Move a finished build into place; the previous bundle survives until the new one is complete."""
    old = None
    if dest.exists():
        old = dest.with_name(dest.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    os.replace(new, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
