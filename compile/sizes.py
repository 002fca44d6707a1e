"""Integer size arithmetic shared by the kernels and the int8 pass."""

from __future__ import annotations


def round_up(x: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= x."""
    return -(-x // multiple) * multiple


def ceil_div(x: int, d: int) -> int:
    return -(-x // d)
