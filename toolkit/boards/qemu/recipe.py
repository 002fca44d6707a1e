"""The image recipe: everything that decides what the emulated board's image contains. Its
hash names the cache entry, so changing anything here (or the mirror) means a rebuild and
nothing else does."""

from __future__ import annotations

import hashlib
import json
import shlex

from ..provision import ORT, RUNTIME

RECIPE_VERSION = 1  # bump when the build steps below change in a way the fields do not show
SUITE = "bookworm"
ARCH = "arm64"
PYTHON = "3.11"  # bookworm's python3
USER = "edgeopt"
HOSTNAME = "edgeopt-qemu"
IMAGE_MB = 3072
# user mode needs only the first line; the rest make it bootable for system mode
PACKAGES = [
    "openssh-server",
    "python3",
    "python3-venv",
    "iproute2",
    "netbase",
    "procps",
    "systemd-sysv",
    "udev",
    "dbus",
    "linux-image-arm64",
    "initramfs-tools",
]
# MODULES=list: an initrd with just these (6 MB instead of 35, and fast to make under emulation)
INITRD_MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "ext4"]
WHEELS = RUNTIME + ORT
# timers that would only burn emulated CPU on a throw-away board
MASKED_UNITS = [
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "e2scrub_reap.service",
]


def recipe(mirror: str | None = None) -> dict:
    return {
        "version": RECIPE_VERSION,
        "suite": SUITE,
        "arch": ARCH,
        "python": PYTHON,
        "user": USER,
        "packages": PACKAGES,
        "initrd_modules": INITRD_MODULES,
        "wheels": WHEELS,
        "image_mb": IMAGE_MB,
        "masked_units": MASKED_UNITS,
        "mirror": mirror,
        "customize": customize_script(),
    }


def key(r: dict) -> str:
    return hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:16]


def essential_hook() -> str:
    """Before the kernel and initramfs-tools are installed: small initrds from the start."""
    return (
        'mkdir -p "$1/etc/initramfs-tools/conf.d" && '
        'printf "MODULES=list\\nCOMPRESS=gzip\\n" > "$1/etc/initramfs-tools/conf.d/edgeopt.conf"'
    )


def customize_script() -> str:
    """Runs inside the arm64 chroot (under qemu-user) with /tmp/edgeopt-build synced in:
    authorized_keys and wheels/. The board user gets the same venv `edgeopt board setup` makes
    (~/.edgeopt/venv), so deploy and bench find the runtime with no extra set-up."""
    u = USER
    home = f"/home/{u}"
    venv = f"{home}/.edgeopt/venv"
    q = shlex.quote
    return "\n".join(
        [
            "set -eu",
            "export QEMU_CPU=cortex-a72  # pip's numpy warns spuriously under the default 'max' (SVE)",
            f"useradd -m -s /bin/bash -U {u}",
            f"usermod -p '*' {u}  # no password, not locked: key login only",
            f"install -d -m 700 -o {u} -g {u} {home}/.ssh",
            f"install -m 600 -o {u} -g {u} /tmp/edgeopt-build/authorized_keys {home}/.ssh/authorized_keys",
            "printf 'PasswordAuthentication no\\nKbdInteractiveAuthentication no\\nPermitRootLogin no\\nUseDNS no\\n'"
            " > /etc/ssh/sshd_config.d/edgeopt.conf",
            f"echo {HOSTNAME} > /etc/hostname",
            f"printf '127.0.0.1 localhost\\n127.0.1.1 {HOSTNAME}\\n' > /etc/hosts",
            "printf '/dev/vda / ext4 rw,relatime 0 1\\n' > /etc/fstab",
            "mkdir -p /etc/systemd/network",
            "printf '[Match]\\nName=eth0\\n\\n[Network]\\nDHCP=ipv4\\n' > /etc/systemd/network/20-eth0.network",
            "systemctl enable systemd-networkd",
            "systemctl mask " + " ".join(MASKED_UNITS),
            "printf '%s\\n' " + " ".join(INITRD_MODULES) + " >> /etc/initramfs-tools/modules",
            "update-initramfs -u -k all",
            f"python3 -m venv {venv}",
            f"{venv}/bin/python -m pip install --disable-pip-version-check -q --no-index"
            f" --find-links /tmp/edgeopt-build/wheels " + " ".join(q(w) for w in WHEELS),
            f'TVM_USE_RUNTIME_LIB=1 {venv}/bin/python -c \'import numpy, tvm; print("runtime", '
            "tvm.__version__, numpy.__version__)'",
            f"chown -R {u}:{u} {home}",
            "apt-get clean",
            "rm -rf /var/lib/apt/lists/*",
            "",
        ]
    )
