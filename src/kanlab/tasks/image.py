"""Image parameterization: fit luminance(x, y) of a grayscale image; PSNR.

Choices, stated once:
- Grayscale luminance in [0, 1]: integer images are scaled by their type's maximum, floats are
  clipped to [0, 1]; RGB goes through skimage.color.rgb2gray (ITU-R 709 weights); alpha is dropped.
- Resizing keeps the aspect ratio: the longest side becomes image_size, the other side
  round(side * image_size / longest) (at least 1), with skimage.transform.resize(anti_aliasing=True).
- Coordinates: pixel centers evenly spaced with the first and last at -1 and 1 on both axes
  (linspace(-1, 1, n), as in SIREN), columns are (x, y): x grows to the right, y downwards.
- Train and test sets are both every pixel in row-major order, so y_test.reshape(image_shape)
  is the image: the task is to represent the image, as in the founding experiment (all pixels,
  minibatches); TaskConfig's n_train/n_test (point counts for functions) do not apply.
- A validation split (val_fraction > 0, for tuning) holds a seeded random share of the pixels
  (default_rng([seed, 4]), at least one, never all) out of training: the model never fits them,
  so ranking trials on them ranks how well each fills in pixels it did not see, not how closely it
  memorises the ones it did. The test set stays every pixel (the picture is what is represented),
  so it holds the validation pixels too: a tune's verdict retrains on every pixel and is judged on
  every pixel, as a plain study is (kanlab.runs.tune).

Legend: h, w image height and width, p = h * w pixels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image
from skimage.color import rgb2gray
from skimage.transform import resize
from skimage.util import img_as_float

from kanlab.tasks.base import STREAM_VAL, Dataset, raw_dataset

# scikit-image's CC0 images that ship inside its wheel (no download needed), 2-D gray or RGB(A).
IMAGES = (
    "astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee",
    "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
    "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
    "shepp_logan_phantom", "text",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _to_luminance(img: np.ndarray, source: str) -> np.ndarray:
    """(h, w), (h, w, 1..4) image of any dtype -> (h, w) float64 luminance in [0, 1]."""
    if img.ndim == 3 and img.shape[2] in (1, 2):  # gray, gray + alpha
        img = img[..., 0]
    elif img.ndim == 3 and img.shape[2] in (3, 4):  # RGB, RGBA
        img = img[..., :3]
    elif img.ndim != 2:
        raise ValueError(f"{source}: expected a 2-D gray or RGB(A) image, got shape {img.shape}")
    gray = img_as_float(img)
    if gray.ndim == 3:
        gray = rgb2gray(gray)
    return np.clip(gray.astype(np.float64), 0.0, 1.0)


def load_image(name: str) -> np.ndarray:
    """Load a bundled image by name or an image file by path, as grayscale luminance.

    Args:
        name: one of IMAGES, or a path to a PNG/JPEG (or BMP/TIFF) file.
    Returns:
        (h, w) float64 array in [0, 1].
    """
    if name in IMAGES:
        return _to_luminance(np.asarray(getattr(skimage.data, name)()), name)
    path = Path(name).expanduser()
    hint = f"bundled images: {', '.join(IMAGES)}"
    if not path.is_file():
        raise FileNotFoundError(f"image {str(path)!r} is not a file (nor a bundled name); {hint}")
    try:
        img = _read_file(path)
    except (OSError, ValueError, SyntaxError) as err:  # what Pillow raises on bad files
        raise ValueError(f"cannot read image {str(path)!r}: {err}; {hint}") from err
    return _to_luminance(img, str(path))


def _read_file(path: Path) -> np.ndarray:
    """Pixels of an image file; Pillow directly, as imageio's plugin search warns on bad files."""
    with Image.open(path) as im:
        if im.mode in ("P", "PA"):  # palette -> the colors it indexes
            im = im.convert("RGBA")
        elif im.mode not in ("1", "L", "LA", "RGB", "RGBA", "I;16", "I", "F"):
            im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV
        img = np.asarray(im)
    if img.dtype == np.int32:  # mode "I": 16-bit data widened by Pillow
        img = img.astype(np.float64) / 65535.0
    return img


def fitted_shape(height: int, width: int, image_size: int | None) -> tuple[int, int]:
    """Shape after scaling so that the longest side is image_size (None keeps the size)."""
    if image_size is None:
        return height, width
    scale = image_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(img: np.ndarray, image_size: int | None) -> np.ndarray:
    """Resize (h, w) to fitted_shape with anti-aliasing; returns img itself when unchanged."""
    shape = fitted_shape(img.shape[0], img.shape[1], image_size)
    if shape == img.shape:
        return img
    return np.asarray(resize(img, shape, anti_aliasing=True), dtype=np.float64)


def pixel_coords(height: int, width: int) -> np.ndarray:
    """(x, y) of every pixel center in row-major order, in [-1, 1] with corners at +-1.

    Args:
        height, width: image shape.
    Returns:
        (height * width, 2) array; row r, column c is at index r * width + c.
    """
    x = np.linspace(-1.0, 1.0, width)
    y = np.linspace(-1.0, 1.0, height)
    yy, xx = np.meshgrid(y, x, indexing="ij")                                     # (h, w) each
    return np.stack([xx.reshape(-1), yy.reshape(-1)], axis=1)                     # (p, 2)


def image_dataset(name: str, image_size: int | None, *, val_fraction: float = 0.0, seed: int = 0) -> Dataset:
    """Luminance of an image as a function of pixel coordinates (see the module docstring).

    Args:
        name: one of IMAGES or an image file path.
        image_size: longest side after resizing; None keeps the original size.
        val_fraction: share of the pixels held out of training for validation (0: none).
        seed: which pixels are held out (default_rng([seed, 4])).
    Returns:
        float64 Dataset with x = coords, test = every pixel, train = every pixel but the held-out
        ones, image_shape = (h, w); split holds the pixel indices when some are held out.
    """
    img = resize_image(load_image(name), image_size)                              # (h, w)
    h, w = img.shape
    coords, lum = pixel_coords(h, w), img.reshape(-1)                             # (p, 2), (p,)
    desc = f"image {name} ({h}x{w} grayscale luminance in [0, 1])"
    if val_fraction <= 0:
        return raw_dataset(coords, lum, coords, lum, input_names=("x", "y"), target_names=("luminance",),
                           image_shape=(h, w), description=desc)
    p = h * w
    if p < 2:
        raise ValueError(f"image {name} has {p} pixel: a validation split needs at least 2")
    n_val = min(p - 1, max(1, round(val_fraction * p)))
    val = np.sort(np.random.default_rng([seed, STREAM_VAL]).permutation(p)[:n_val])
    train = np.setdiff1d(np.arange(p), val)
    split = {"seed": seed, "val_fraction": val_fraction, "train_rows": train, "val_rows": val}
    return raw_dataset(
        coords[train], lum[train], coords, lum,
        input_names=("x", "y"), target_names=("luminance",), image_shape=(h, w),
        description=f"{desc}, {n_val} pixels held out for validation", split=split,
        val=(coords[val], lum[val]),
    )


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio 10 log10(peak^2 / mse) in dB; inf for mse = 0.

    Args:
        mse: mean squared error (>= 0).
        peak: the largest possible signal value (1.0 for luminance in [0, 1]).
    Returns:
        PSNR in decibels.
    """
    mse, peak = float(mse), float(peak)
    if not mse >= 0 or math.isinf(mse):
        raise ValueError(f"mse must be finite and >= 0, got {mse!r}")
    if not 0 < peak < math.inf:
        raise ValueError(f"peak must be finite and > 0, got {peak!r}")
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)
