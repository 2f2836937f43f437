"""Digits on the Explanations page: a drawing turned into the digits model's 8x8 input, pictures of
8x8 inputs, and a gallery of test digits to pick from.

    x = drawing_input(canvas_rgba)          # 8 rows of 8 values in 0..16, or None for a blank canvas
    for index, label, image in gallery():   # the first test digit of each class
        st.image(picture(image))

scikit-learn's digits were made by counting the on-pixels of each 4x4 block of a 32x32 bitmap,
so each input is 0 (blank) .. 16 (all ink). A drawing is turned into the same: the mean ink of
each of 8x8 equal cells (24x24 pixels of a 192-pixel canvas), times 16. No torch: numpy only.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from sparsity_core.data import load_dataset
from sparsity_core.explain.splits import split_seed

CELLS = 8  # the digits model reads 8x8 inputs
INK_MAX = 16  # 4x4 = 16 pixels per block in scikit-learn's digits: a full block reads 16


def ink(picture: np.ndarray) -> np.ndarray:
    """(h, w) ink in [0, 1] of an RGBA, RGB or grey uint8 picture laid on white paper: 0 = white,
    1 = black. A transparent pixel is paper."""
    px = np.asarray(picture, dtype=np.float64) / 255.0
    if px.ndim == 2:
        return 1.0 - px
    rgb, alpha = px[..., :3], px[..., 3] if px.shape[-1] == 4 else 1.0
    grey = rgb.mean(axis=-1) * alpha + (1.0 - alpha)  # composited on white
    return 1.0 - grey


def downsample(ink_map: np.ndarray) -> list[list[float]]:
    """8 rows of 8 inputs in 0..16: the mean ink of each of 8x8 equal cells, times 16 (rounded to
    0.01). The picture's sides need not divide by 8: cell edges are rounded pixel positions."""
    h, w = ink_map.shape
    rows, cols = np.linspace(0, h, CELLS + 1).round().astype(int), np.linspace(0, w, CELLS + 1).round().astype(int)
    return [[round(float(ink_map[rows[i]:rows[i + 1], cols[j]:cols[j + 1]].mean() * INK_MAX), 2)
             for j in range(CELLS)] for i in range(CELLS)]


def drawing_input(picture: Optional[np.ndarray]) -> Optional[list[list[float]]]:
    """The 8x8 input of a canvas picture, or None when there is no picture or it has no ink."""
    if picture is None:
        return None
    image = downsample(ink(picture))
    return image if any(v > 0 for row in image for v in row) else None


FRAME = 200  # the light grey of a picture's 1-pixel frame: a blank input stays visible on a white page


def picture(image, scale: int = 6) -> np.ndarray:
    """A uint8 grey picture of an 8x8 input (0..16): black ink on white, each input a scale x scale
    square (so the browser shows sharp pixels instead of blurring an 8x8 image), in a 1-pixel frame."""
    values = np.clip(np.asarray(image, dtype=np.float64), 0, INK_MAX)
    grey = np.round(255 * (1 - values / INK_MAX)).astype(np.uint8)
    return np.pad(np.kron(grey, np.ones((scale, scale), dtype=np.uint8)), 1, constant_values=FRAME)


def gallery(dataset: str = "digits", seed: int = 0) -> list[tuple[int, str, np.ndarray]]:
    """(test row, true label, 8x8 image) of the first row of each class in the test split an
    explanation of `dataset` with `seed` reads, in class order."""
    test = load_dataset(dataset, "test", split_seed(dataset, seed))
    firsts = [int(np.flatnonzero(test.labels == c)[0]) for c in range(len(test.classes)) if (test.labels == c).any()]
    return [(i, test.classes[int(test.labels[i])], test.images[i]) for i in firsts]
