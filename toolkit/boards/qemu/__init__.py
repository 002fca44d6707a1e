"""The QEMU-emulated aarch64 board: an arm64 Debian image built once and cached (`build`),
started in user mode (the image's own arm64 sshd under qemu-user in a chroot) or system mode
(qemu-system-aarch64 with a forwarded loopback port), reached over SSH like any real board.

Needs root and the host packages in `host.HOST_PACKAGES`."""

from __future__ import annotations

MODES = ("user", "system")
# board names written to boards.toml by `up`, one per mode
BOARD_NAMES = {"user": "qemu", "system": "qemu-system"}
