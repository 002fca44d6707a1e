"""What a bundle must be before any of it leaves the host: plain file names inside the bundle
(a manifest is data a stranger may have written), its library listed, every listed file a
regular file there. The board agent checks the same names again (board/agent/bundle.py)."""
from __future__ import annotations

import re
from pathlib import Path

from edgeopt.errors import BundleError

LIBRARY = "model.so"
MANIFEST = "manifest.json"
# a plain name: no separator, no control character, not . or .., not hidden
_PLAIN = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]{0,127}")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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


def check_bundle(path: Path, manifest: dict) -> None:
    """Refuse (exit 6) a bundle whose manifest names a file outside it, lists no library, or
    whose listed files are not regular files inside the bundle directory."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"bundle {path}: manifest.json has no files table", hint="rebuild it with `edgeopt compile`")
    root = path.resolve()
    for name, meta in files.items():
        why = bad_name_reason(name)
        if why:
            raise BundleError(f"bundle {path}: manifest names the file {name!r}, which is {why}; refused",
                              hint="a bundle's files are plain names inside it; rebuild it with `edgeopt compile`")
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) or not _SHA256.match(meta["sha256"]):
            raise BundleError(f"bundle {path}: manifest entry {name!r} has no valid sha256",
                              hint="rebuild it with `edgeopt compile`")
        f = path / name
        if f.is_symlink() or not f.resolve().parent == root or not f.is_file():
            raise BundleError(f"bundle {path}: {name} is not a regular file inside the bundle; refused",
                              hint="copy the bundle with its files, not links to them")
    if LIBRARY not in files:
        raise BundleError(f"bundle {path} has no {LIBRARY} in its manifest: nothing to run",
                          hint="rebuild it with `edgeopt compile`")


def load_checked(path: Path):
    """Bundle.load, with the names checked first: no file outside the bundle is even hashed."""
    import json

    from edgeopt.compile import Bundle

    mpath = path / MANIFEST
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            manifest = None  # Bundle.load says what is wrong with it
        if isinstance(manifest, dict):
            check_bundle(path, manifest)
        elif manifest is not None:
            raise BundleError(f"{mpath} is not a JSON object", hint="rebuild it with `edgeopt compile`")
    bundle = Bundle.load(path)
    check_bundle(bundle.path, bundle.manifest)
    return bundle
