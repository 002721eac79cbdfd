"""Reconstruction pictures read without the code: pixel colours, marked masked patches, a title."""

from __future__ import annotations

import matplotlib.image
import numpy as np

from mim_jax.core.reconstruction import (
    MASK_COLOUR,
    reconstruction_figure,
    reconstruction_title,
    save_reconstructions,
    to_pixels,
)
from mim_jax.data.augment import normalize


def grey_batch(batch: int = 2, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Grey uint8 images (equal channels) and their normalised model inputs."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (batch, size, size, 1), dtype=np.uint8).repeat(3, axis=-1)
    return grey, np.stack([normalize(image) for image in grey])


def test_grey_images_are_drawn_grey_in_their_own_pixel_values():
    grey, inputs = grey_batch()
    pixels = to_pixels(inputs)
    assert np.allclose(pixels[..., 0], pixels[..., 1], atol=1e-5)
    assert np.allclose(pixels[..., 1], pixels[..., 2], atol=1e-5)
    assert np.allclose(pixels, grey / 255.0, atol=1e-5)
    one_channel = to_pixels(inputs[..., :1])  # grey from one channel, repeated to RGB
    assert one_channel.shape[-1] == 3 and np.allclose(one_channel[..., 0], one_channel[..., 2])


def test_masked_patches_are_painted_and_outlined_and_the_title_says_what_it_shows(tmp_path):
    _, inputs = grey_batch()
    mask = np.zeros((2, 4, 4), bool)
    mask[:, :2, :] = True  # the top half of a 4x4 patch grid is masked
    title = reconstruction_title("green", 0.5, 600, 0.9617, "train loss", (8, 16))
    assert title == "mask green, ratio 0.5 (8 of 16 patches), step 600, train loss 0.9617"
    fig = reconstruction_figure(inputs, inputs * 0, inputs, mask=mask, title=title)
    assert fig._suptitle.get_text() == title
    original, masked, recon = (ax.images[0].get_array() for ax in fig.axes[:3])
    assert np.allclose(recon, to_pixels(inputs[0]))
    painted = np.all(np.isclose(masked, MASK_COLOUR), axis=-1)
    assert painted[:8].all() and not painted[8:].any()  # exactly the masked patches
    assert np.allclose(masked[8:], original[8:])  # visible patches shown as they are
    outline = fig.axes[2].collections[0].get_segments()
    assert len(outline) == 4 + 4 + 2 + 2  # top and bottom of 4 patches, two sides of 2 each
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any("masked" in label for label in labels)
    path = save_reconstructions(str(tmp_path / "r" / "x.png"), inputs, inputs, inputs, mask=mask)
    assert matplotlib.image.imread(path).shape[-1] in (3, 4)
