"""PNG grids of images with a caption strip: sample grids, reconstructions, filters, dgm-sample.

Small images are scaled up by an integer factor (nearest neighbour, so pixels stay pixels) until
a cell is at least ``MIN_CELL`` pixels: 8x8 digits become 32x32 cells, not a 82-pixel grid.
The caption (one line of PIL's built-in font above the grid) says what the rows are.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

MIN_CELL = 28  # pixels per image in a grid at least (MNIST's own size)
CAPTION_HEIGHT = 16
PADDING = 2


def grid_image(images: torch.Tensor, nrow: int, caption: str = "") -> Image.Image:
    """Images (N, C, H, W) in [0, 1] as one RGB picture, ``nrow`` per row, ``caption`` on top."""
    images = images.detach().float().clamp(0, 1).cpu()
    scale = max(1, math.ceil(MIN_CELL / max(images.shape[-2:])))
    if scale > 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    grid = make_grid(images, nrow=max(1, nrow), padding=PADDING)
    picture = Image.fromarray(grid.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()).convert("RGB")
    if not caption:
        return picture
    font = ImageFont.load_default()
    width = max(picture.width, int(ImageDraw.Draw(picture).textlength(caption, font=font)) + 8)
    framed = Image.new("RGB", (width, picture.height + CAPTION_HEIGHT), "white")
    ImageDraw.Draw(framed).text((4, 2), caption, fill="black", font=font)
    framed.paste(picture, (0, CAPTION_HEIGHT))
    return framed


def save_grid(images: torch.Tensor, path: str | Path, nrow: int, caption: str = "") -> Path:
    """Write :func:`grid_image` to ``path`` (PNG); returns the path."""
    grid_image(images, nrow, caption).save(path)
    return Path(path)


def when(tag: str) -> str:
    """A grid's file tag in words: ``epoch0003`` -> ``epoch 3``, ``step0000100`` -> ``step 100``."""
    return re.sub(r"([a-z]+)0*(\d+)", r"\1 \2", tag)
