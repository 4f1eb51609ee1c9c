"""Shape arguments as the configs give them (an int or a list) turned into tuples of ints, and the
plan of convolutional networks sized from an image shape."""

from __future__ import annotations

from dgm_lab.errors import ConfigError


def as_shape(shape) -> tuple[int, ...]:
    """``5`` -> ``(5,)``; ``[1, 28, 28]`` (a list, tuple or ListConfig) -> ``(1, 28, 28)``."""
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


def image_shape(shape, hint: str = "") -> tuple[int, int, int]:
    """(C, H, W) of an image shape; one sentence (ending in ``hint``) for anything else."""
    shape = as_shape(shape)
    if len(shape) != 3:
        raise ConfigError(f"convolutional networks need (C, H, W) images, got shape {list(shape)}{hint}.")
    return shape


def halving_plan(shape, hint: str = "") -> tuple[int, int, int, int]:
    """(C, H, W) -> (C, h, w, n): n stride-2 halvings of H and W while both are even and larger than 4.

    28x28 -> 7x7 after 2 stages, 32x32 -> 4x4 after 3, 64x64 -> 4x4 after 4, 8x8 -> 4x4 after 1.
    """
    c, h, w = image_shape(shape, hint)
    stages = 0
    while h % 2 == 0 and w % 2 == 0 and min(h, w) > 4:
        h, w, stages = h // 2, w // 2, stages + 1
    if stages == 0:
        raise ConfigError(f"image size {shape[1]}x{shape[2]} cannot be halved: these networks need even sides larger than 4.")
    return c, h, w, stages
