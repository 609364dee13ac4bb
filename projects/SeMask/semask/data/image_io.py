"""The one image and label reader of every path (training, evaluation, demo, predictor).

Images are decoded by Pillow from the whole file, with EXIF orientation applied, and converted by
one set of rules (:func:`to_uint8_image`) to uint8 [H, W, 3]. A truncated or unreadable file is an
:class:`ImageReadError` naming the file, whatever ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` says.

Label maps are read without EXIF orientation: annotation tools store them in the orientation the
image is shown in, which is the orientation :func:`read_image` returns (and the one detectron2's
``SemSegEvaluator`` reads the labels in).
"""

import io
from typing import Tuple

import cv2
import numpy as np
from detectron2.utils.file_io import PathManager
from PIL import Image

__all__ = [
    "DataError",
    "ImageReadError",
    "as_bgr_uint8",
    "read_image",
    "read_label",
    "to_uint8_image",
]

EXIF_ORIENTATION = 0x0112
# The numpy operation of each EXIF orientation (2..8) on an [H, W, ...] array.
ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}
# Pillow modes converted by Pillow before the array rules; others are taken as they are.
PIL_CONVERSIONS = {
    "1": "L",
    "LA": "L",
    "La": "L",
    "P": "RGBA",
    "PA": "RGBA",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}
LABEL_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N")


class DataError(ValueError):
    """A sample of a data set cannot be used; the message names its file(s) and the problem."""


class ImageReadError(DataError):
    """An image or label file is missing, unreadable, truncated or of an unsupported kind."""


def to_uint8_image(image: np.ndarray) -> np.ndarray:
    """The conversion rules of every image: an array -> uint8 [H, W, 3], channel order kept.

    Accepts [H, W], [H, W, 1] (grayscale, repeated to three channels), [H, W, 3] and [H, W, 4]
    (the fourth, alpha, channel is dropped); uint8 as is, uint16 scaled by 255/65535 with rounding,
    floating point read as [0, 1] (clipped).
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"expected an image [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {image.shape}"
        )
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float32) / 257.0).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {image.dtype} (expected uint8, uint16 or float)")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def as_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """An image as ``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` returns it (gray, BGR, BGRA; uint8,
    uint16 or float) -> BGR uint8 [H, W, 3], by the rules of :func:`to_uint8_image`."""
    return to_uint8_image(image)


class _WatchedBytes(io.BytesIO):
    """File bytes that remember whether a read found no data left (a truncated file)."""

    ran_out = False

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        if not data and size != 0:
            self.ran_out = True
        return data


def _open_loaded(path: str) -> Tuple[Image.Image, bytes]:
    """The fully decoded Pillow image of ``path`` and the file's bytes."""
    try:
        with PathManager.open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise ImageReadError(f"{path}: cannot be read ({error})") from error
    buffer = _WatchedBytes(data)
    try:
        image = Image.open(buffer)
        buffer.ran_out = False
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        problem = "truncated" if "truncated" in str(error) else "not a readable"
        raise ImageReadError(f"{path}: {problem} image file ({error})") from error
    if buffer.ran_out:
        raise ImageReadError(f"{path}: truncated image file (the data ends before the image)")
    return image, data


def _is_16_bit_colour(image: Image.Image, data: bytes) -> bool:
    """Whether ``image`` is a 16-bit-per-channel colour PNG (which Pillow decodes to 8 bits)."""
    # Byte 24 of a PNG is the bit depth of its IHDR chunk.
    return image.format == "PNG" and image.mode in ("RGB", "RGBA") and data[24:25] == b"\x10"


def read_image(path: str, format: str = "BGR") -> np.ndarray:
    """The image of file ``path`` as uint8 [H, W, 3] in ``format`` ("RGB" or "BGR") channel order.

    EXIF orientation is applied; 1-bit, grayscale, palette, CMYK, YCbCr, alpha, 16-bit ("I;16",
    "I" clipped to 0..65535, 16-bit colour PNG) and float ("F", read as [0, 1]) images follow
    :func:`to_uint8_image`. Raises :class:`ImageReadError` naming ``path`` if the file is missing,
    truncated or not an image.
    """
    if format not in ("RGB", "BGR"):
        raise ValueError(f"image format must be 'RGB' or 'BGR', got {format!r}")
    image, data = _open_loaded(path)
    orientation = image.getexif().get(EXIF_ORIENTATION)
    if _is_16_bit_colour(image, data):
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        array = array[:, :, [2, 1, 0, 3][: array.shape[2]]]
    else:
        image = (
            image.convert(PIL_CONVERSIONS[image.mode]) if image.mode in PIL_CONVERSIONS else image
        )
        array = np.asarray(image)
        if image.mode == "I":
            array = np.clip(array, 0, 65535).astype(np.uint16)
        elif image.mode.startswith("I;16"):
            array = array.astype(np.uint16)
    try:
        array = to_uint8_image(array)
    except ValueError as error:
        raise ImageReadError(f"{path}: unsupported image (mode {image.mode}: {error})") from error
    array = ORIENT[orientation](array) if orientation in ORIENT else array
    return np.ascontiguousarray(array if format == "RGB" else array[:, :, ::-1])


def read_label(path: str) -> np.ndarray:
    """The label map of PNG (or other single-channel image) ``path`` as int64 [H, W].

    Modes L, P (palette indices, not colours), I;16, I and 1 are read as their values; no EXIF
    orientation is applied. Raises :class:`ImageReadError` naming ``path`` if the file is missing,
    truncated, not an image or has several channels.
    """
    image, _ = _open_loaded(path)
    if image.mode not in LABEL_MODES:
        raise ImageReadError(
            f"{path}: a label map must be single-channel (mode L, P, I;16 or I), "
            f"got mode {image.mode}"
        )
    return np.asarray(image).astype(np.int64)
