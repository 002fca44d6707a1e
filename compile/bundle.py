"""The compile stage's artifact: bundle/ = model.so + manifest.json, hashes verified on load.

A manifest is data a stranger may have written: its file names are checked to be plain names of
regular files inside the bundle before any file is opened (the board agent checks them again,
board/agent/bundle.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import BundleError

SCHEMA = "edgeopt.bundle/1"
MANIFEST = "manifest.json"
LIBRARY = "model.so"
# a plain name: no separator, no control character, not . or .., not hidden
_PLAIN = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]{0,127}")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REBUILD = "rebuild it with `edgeopt compile`"


def bad_name_reason(name: object) -> str | None:
    """Why `name` is not a plain file name inside a bundle, or None."""
    if not isinstance(name, str):
        return "not a string"
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        return "a path, not a plain name"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "has a control character"
    if not _PLAIN.fullmatch(name):
        return "not a plain name (letters, digits, . _ + -; at most 128)"
    if name == MANIFEST:
        return "the manifest cannot list itself"
    return None


def check(path: Path, manifest: dict) -> None:
    """Refuse (exit 6) a manifest that names a file outside the bundle, lists no library, or
    whose listed files are not regular files inside the bundle directory. Opens no listed file."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"bundle {path}: manifest.json has no files table", hint=_REBUILD)
    root = path.resolve()
    for name, meta in files.items():
        why = bad_name_reason(name)
        if why:
            raise BundleError(
                f"bundle {path}: manifest names the file {name!r}, which is {why}; refused",
                hint=f"a bundle's files are plain names inside it; {_REBUILD}",
            )
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) or not _SHA256.match(meta["sha256"]):
            raise BundleError(f"bundle {path}: manifest entry {name!r} has no valid sha256", hint=_REBUILD)
        f = path / name
        if not f.exists() and not f.is_symlink():
            raise BundleError(f"bundle {path} is missing {name}", hint=_REBUILD)
        if f.is_symlink() or not f.resolve().parent == root or not f.is_file():
            raise BundleError(
                f"bundle {path}: {name} is not a regular file inside the bundle; refused",
                hint="copy the bundle with its files, not links to them",
            )
    if LIBRARY not in files:
        raise BundleError(f"bundle {path} has no {LIBRARY} in its manifest: nothing to run", hint=_REBUILD)


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
        """Read and check a bundle: manifest shape and names first (check), then every hash."""
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise BundleError(f"{path} is not a bundle: no {MANIFEST}", hint="run `edgeopt compile` to make one")
        try:
            manifest = json.loads(mpath.read_text())
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            why = str(exc)[:200] or type(exc).__name__
            raise BundleError(f"{mpath} is not valid JSON: {why}", hint=_REBUILD) from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{mpath} is not a JSON object", hint=_REBUILD)
        if manifest.get("schema") != SCHEMA:
            raise BundleError(f"{mpath}: schema {manifest.get('schema')!r}, this edgeopt reads {SCHEMA!r}")
        check(path, manifest)
        for name, meta in manifest["files"].items():
            if sha256_file(path / name) != meta["sha256"]:
                raise BundleError(
                    f"bundle file {path / name} does not match its sha256 in {MANIFEST}",
                    hint="the file was changed or damaged; rebuild the bundle",
                )
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
