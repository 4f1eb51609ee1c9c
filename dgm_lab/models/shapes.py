"""Shape arguments as the configs give them (an int or a list) turned into tuples of ints."""

from __future__ import annotations


def as_shape(shape) -> tuple[int, ...]:
    """``5`` -> ``(5,)``; ``[1, 28, 28]`` (a list, tuple or ListConfig) -> ``(1, 28, 28)``."""
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
