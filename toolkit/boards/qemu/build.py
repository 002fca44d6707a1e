"""`edgeopt board qemu build`: the arm64 Debian image, built once and cached.

    <cache>/qemu/images/<recipe key>/
        rootfs/         the root filesystem (user mode chroots into an overlay of it)
        vmlinuz, initrd.img, rootfs.ext4   system mode (booted with -snapshot: never written)
        id_ed25519      the client key the toolkit made; its .pub is the board user's authorized_keys
        image.json      recipe, key, the image's own SSH host keys, build times

A build goes to a temporary directory and is renamed into place when complete, so a half-built
image is never used."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import BoardError

from ..config import cache_dir
from . import host
from . import recipe as rcp


def images_dir() -> Path:
    return cache_dir() / "qemu" / "images"


@dataclass(frozen=True)
class Image:
    dir: Path
    meta: dict

    @property
    def key(self) -> str:
        return self.meta["key"]

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def ext4(self) -> Path:
        return self.dir / "rootfs.ext4"

    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def host_keys(self) -> list[str]:
        """The image's SSH host public keys, 'type base64' each."""
        return self.meta["host_keys"]

    @property
    def user(self) -> str:
        return self.meta["recipe"]["user"]

    @classmethod
    def load(cls, d: Path) -> "Image":
        return cls(d, json.loads((d / "image.json").read_text()))


def find(mirror: str | None = None) -> Image | None:
    """The cached image for the current recipe, or None."""
    d = images_dir() / rcp.key(rcp.recipe(mirror))
    return Image.load(d) if (d / "image.json").is_file() else None


def require_image(mirror: str | None = None) -> Image:
    img = find(mirror)
    if img is None:
        any_other = [p for p in images_dir().glob("*/image.json")] if images_dir().is_dir() else []
        if mirror is None and len(any_other) == 1:  # built with --mirror: same recipe otherwise
            other = Image.load(any_other[0].parent)
            if {**other.meta["recipe"], "mirror": None} == rcp.recipe(None):
                return other
        raise BoardError(
            "the emulated aarch64 board's image is not built (or its recipe changed)",
            hint="run `edgeopt board qemu build` (about 10-15 minutes, once)",
        )
    return img


def _host_sources(suite: str) -> list[str]:
    """The machine's own apt sources for `suite`, as files mmdebstrap pastes in; [] = its default."""
    deb822 = sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    one_line = [
        p for p in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))] if os.path.isfile(p)
    ]

    def mentions(p: str) -> bool:
        try:
            return any(suite in line for line in open(p) if not line.lstrip().startswith("#"))
        except OSError:
            return False

    return [p for p in deb822 if mentions(p)] or [p for p in one_line if mentions(p)]


def _host_apt_options() -> list[str]:
    """The host apt's fetching options (proxy, Release-file date checks), as --aptopt values."""
    try:
        out = subprocess.run(["apt-config", "dump"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    keep = (
        "Acquire::http::Proxy",
        "Acquire::https::Proxy",
        "Acquire::Check-Valid-Until",
        "Acquire::Check-Date",
        "Acquire::Retries",
    )
    return [line.strip() for line in out.splitlines() if line.startswith(keep) and line.rstrip().endswith(";")]


def _write_client_key(path: Path) -> str:
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519", comment="edgeopt-qemu")
    key.write_private_key(str(path), format_name="openssh")
    os.chmod(path, 0o600)
    return key.export_public_key("openssh").decode().strip()


def build(*, mirror: str | None = None, force: bool = False, progress=None) -> tuple[Image, bool]:
    """(image, built): the cached image if its recipe is unchanged, else a new build."""
    say = progress or (lambda m: None)
    r = rcp.recipe(mirror)
    k = rcp.key(r)
    final = images_dir() / k
    if not force and (final / "image.json").is_file():
        return Image.load(final), False
    host.require()
    if not os.path.exists(host.sbin("mkfs.ext4")):
        raise host.QemuHostError("the emulated board needs mkfs.ext4", hint="apt-get install e2fsprogs")
    images_dir().mkdir(parents=True, exist_ok=True)
    work = images_dir() / f".{k}.{os.getpid()}.tmp"
    _remove_tree(work)
    work.mkdir(parents=True)
    log = images_dir() / f"build-{k}.log"  # kept when a build fails
    log.write_text("")
    times: dict[str, float] = {}
    did = host.ensure_binfmt()
    try:
        t0 = time.monotonic()
        say(f"downloading the aarch64 wheels for Python {rcp.PYTHON} ({', '.join(rcp.WHEELS)})")
        from ..provision import download_wheels

        wheels = download_wheels("aarch64", rcp.PYTHON, rcp.WHEELS)
        times["wheels_s"] = round(time.monotonic() - t0, 1)

        stage = work / "stage"
        (stage / "wheels").mkdir(parents=True)
        for w in wheels.glob("*.whl"):
            shutil.copy2(w, stage / "wheels" / w.name)
        pub = _write_client_key(work / "id_ed25519")
        (work / "id_ed25519.pub").write_text(pub + "\n")
        (stage / "authorized_keys").write_text(pub + "\n")
        (stage / "customize.sh").write_text(r["customize"])

        rootfs = work / "rootfs"
        cmd = [
            host.sbin("mmdebstrap"),
            "--mode=root",
            f"--arch={rcp.ARCH}",
            "--variant=apt",
            "--format=directory",
            '--aptopt=APT::Install-Recommends "false"',
            *[f"--aptopt={o}" for o in _host_apt_options()],
            "--include=" + ",".join(rcp.PACKAGES),
            "--essential-hook=" + rcp.essential_hook(),
            '--customize-hook=mkdir -p "$1/tmp/edgeopt-build"',
            f"--customize-hook=sync-in {stage} /tmp/edgeopt-build",
            '--customize-hook=chroot "$1" /bin/sh /tmp/edgeopt-build/customize.sh',
            '--customize-hook=rm -rf "$1/tmp/edgeopt-build"',
            rcp.SUITE,
            str(rootfs),
            *([mirror] if mirror else _host_sources(rcp.SUITE)),
        ]
        say(
            f"mmdebstrap: arm64 {rcp.SUITE} with {', '.join(rcp.PACKAGES)}; the runtime venv (under "
            "emulation: ~6-10 min)"
        )
        t = time.monotonic()
        # the host's pip settings (PIP_FIND_LINKS, PIP_CONSTRAINT, ...) mean nothing inside the image
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        host.run(cmd, timeout=3600, what="mmdebstrap", log=log, env=env, inherit=False)
        times["rootfs_s"] = round(time.monotonic() - t, 1)
        shutil.rmtree(stage)

        kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
        initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise BoardError(f"the image has no kernel or initrd in /boot (see {log})")
        shutil.copy2(kernels[-1], work / "vmlinuz")
        shutil.copy2(initrds[-1], work / "initrd.img")

        say(f"ext4 image ({rcp.IMAGE_MB} MB, sparse) for system mode")
        t = time.monotonic()
        host.run(
            [
                host.sbin("mkfs.ext4"),
                "-F",
                "-q",
                "-L",
                "edgeopt",
                "-d",
                str(rootfs),
                str(work / "rootfs.ext4"),
                f"{rcp.IMAGE_MB}M",
            ],
            timeout=900,
            what="mkfs.ext4",
            log=log,
        )
        times["ext4_s"] = round(time.monotonic() - t, 1)

        host_keys = []
        for p in sorted((rootfs / "etc/ssh").glob("ssh_host_*_key.pub")):
            typ, b64 = p.read_text().split()[:2]
            host_keys.append(f"{typ} {b64}")
        if not host_keys:
            raise BoardError(f"the image has no SSH host key (see {log})")
        times["total_s"] = round(time.monotonic() - t0, 1)
        meta = {
            "key": k,
            "recipe": r,
            "host_keys": host_keys,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "kernel": kernels[-1].name,
            "times": times,
        }
        (work / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        shutil.move(str(log), work / "build.log")
        _remove_tree(final)
        work.rename(final)
    except BaseException:
        _remove_tree(work)
        raise
    finally:
        host.release_binfmt(did)
    # older images (another recipe) are dead weight, unless a board still runs from one
    from . import state

    busy = {s.get("image") for s in state.all_states()}
    for other in images_dir().iterdir():
        if other.is_dir() and other.name != k and other.name not in busy and not other.name.startswith("."):
            _remove_tree(other)
    return Image.load(final), True


def _remove_tree(path: Path) -> None:
    """rm -rf, refusing to cross into anything still mounted below it."""
    if not path.exists():
        return
    if host.mounts_under(path):
        raise BoardError(f"{path} still has mounts below it; not removed", hint="run `edgeopt board qemu down`")
    shutil.rmtree(path, ignore_errors=True)
