"""Decode a portrait from bytes, a path or an array into 8-bit RGB, refusing bad input early.

Every failure is an `InvalidInputError` with one line that says what is wrong. The pixel-count
limit is checked from the file header, before any pixel is decoded, so a decompression bomb
(a few bytes claiming 40000×40000) costs nothing. Images over `max_side` are downscaled (JPEGs
are decoded at a reduced DCT scale first, so the full-size raster is never held); the returned
image is the one every later stage uses, and `DecodedImage.scale` maps it back to the file's
pixels.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from topos_sdk.errors import InvalidInputError

ImageSource = Union[bytes, bytearray, memoryview, str, Path, np.ndarray]

DEFAULT_MAX_PIXELS = 100_000_000  # 10000×10000; larger files are refused unread
DEFAULT_MAX_SIDE = 4096  # longer images are downscaled to this long side
MIN_SIDE = 32  # smaller images cannot hold a detectable face
# Photo formats only: Pillow's other plugins (EPS runs Ghostscript, ...) are no business of a
# service that decodes untrusted uploads (the JPEG reader also opens cameras' multi-picture MPO).
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")

# Pillow's own bomb guard warns above MAX_IMAGE_PIXELS and fails above twice that. Our explicit,
# per-call limit replaces it; keep Pillow's threshold at least as high so allowed images decode
# without a warning (lower limits set by the host application are left alone).
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < DEFAULT_MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS

_SRGB_PROFILE = ImageCms.createProfile("sRGB")


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (H, W, 3) uint8 RGB, upright (EXIF orientation applied)
    original_size: tuple[int, int]  # (width, height) of the upright image in the file
    scale: float  # original pixels per returned pixel (1.0 when not downscaled)
    format: str  # "JPEG", "PNG", ..., or "array"

    def to_original_pixels(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) positions in the returned image → the file's upright pixels (pixel centres at
        integer coordinates in both)."""
        return (np.asarray(xy, dtype=np.float64) + 0.5) * self.scale - 0.5


def load_image(
    source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE
) -> np.ndarray:
    """(H, W, 3) uint8 RGB from encoded bytes, a file path or an array; see `decode_image`."""
    return decode_image(source, max_pixels=max_pixels, max_side=max_side).pixels


def decode_image(
    source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE
) -> DecodedImage:
    if isinstance(source, np.ndarray):
        pixels = array_to_rgb8(source)
        height, width = pixels.shape[:2]
        _check_size(width, height, max_pixels, "array")
        pixels, scale = _downscale_array(pixels, max_side)
        return DecodedImage(pixels, (width, height), scale, "array")
    data, name = _read_source(source)
    return _decode_bytes(data, name, max_pixels, max_side)


def _read_source(source: ImageSource) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "image data"
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidInputError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise InvalidInputError(f"{path}: is a directory, not an image file") from None
        except PermissionError:
            raise InvalidInputError(f"{path}: permission denied") from None
        except OSError as error:
            raise InvalidInputError(f"{path}: cannot read ({error.strerror or error})") from None
        return data, str(path)
    raise InvalidInputError(
        f"unsupported image source of type {type(source).__name__}; "
        "pass encoded bytes, a file path or an (H, W[, C]) array"
    )


def _decode_bytes(data: bytes, name: str, max_pixels: int, max_side: int) -> DecodedImage:
    if not data:
        raise InvalidInputError(f"{name}: empty (0 bytes), not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        claimed = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(claimed.group(1)) / 1e6:.0f} megapixels" if claimed else "too many pixels"
        raise InvalidInputError(
            f"{name}: the header claims {size}, over the {max_pixels / 1e6:.0f} megapixel limit; "
            "refused before decoding"
        ) from None
    except UnidentifiedImageError:
        raise InvalidInputError(
            f"{name}: not a readable image ({len(data)} bytes; expected JPEG, PNG, WebP, TIFF or BMP)"
        ) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise InvalidInputError(f"{name}: corrupt image header ({error})") from None

    width, height = image.size
    _check_size(width, height, max_pixels, name)
    file_format = image.format or "unknown"
    orientation = _exif_orientation(image)
    try:
        long_side = max(width, height)
        if image.format == "JPEG" and long_side > max_side:
            # decode at 1/2, 1/4 or 1/8 DCT scale, never below max_side
            image.draft("RGB", (width * max_side // long_side, height * max_side // long_side))
        image.load()
        if orientation != 1:
            image = ImageOps.exif_transpose(image)
        pixels = _pil_to_rgb8(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise InvalidInputError(f"{name}: truncated or corrupt {file_format} data ({error})") from None

    upright_size = (width, height) if orientation in (1, 2, 3, 4) else (height, width)
    pixels, _ = _downscale_array(pixels, max_side)
    # measured against the file's size, so a JPEG draft reduction is included
    scale = upright_size[0] / pixels.shape[1]
    return DecodedImage(pixels, upright_size, float(scale), file_format)


def _exif_orientation(image: Image.Image) -> int:
    """EXIF Orientation (1..8); 1 (as stored) when absent or unreadable: bad metadata is no reason
    to refuse good pixels."""
    try:
        orientation = int(image.getexif().get(0x0112, 1))
    except (OSError, ValueError, TypeError, SyntaxError, struct.error):
        return 1
    return orientation if 1 <= orientation <= 8 else 1


def _check_size(width: int, height: int, max_pixels: int, name: str) -> None:
    if width * height > max_pixels:
        raise InvalidInputError(
            f"{name}: {width}×{height} is {width * height / 1e6:.0f} megapixels, over the "
            f"{max_pixels / 1e6:.0f} megapixel limit; refused before decoding"
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidInputError(
            f"{name}: {width}×{height} is too small to hold a face (at least {MIN_SIDE} px a side)"
        )


def _pil_to_rgb8(image: Image.Image) -> np.ndarray:
    """Any Pillow mode (1, L, LA, P, PA, I;16, I, F, RGBA, CMYK, YCbCr, LAB, ...) → (H, W, 3) uint8 sRGB."""
    icc = image.info.get("icc_profile")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return array_to_rgb8(np.asarray(image))
    if icc and image.mode in ("RGB", "RGBA", "CMYK"):
        image = _to_srgb(image, icc)
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        return array_to_rgb8(np.asarray(image.convert("RGBA")))
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """Colour-manage to sRGB when the file embeds a profile (Display P3 phones, CMYK prints)."""
    try:
        source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(image, source_profile, _SRGB_PROFILE, outputMode=output_mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image  # an unusable profile: keep the raw values rather than fail


def array_to_rgb8(array: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1|2|3|4) of uint8, uint16, other ints, bool or floats in [0, 1] → (H, W, 3) uint8.

    Alpha is composited over white (cut-out portraits usually mean a white background).
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InvalidInputError(
            f"image array has shape {array.shape}; expected (H, W), (H, W, 3) or (H, W, 4)"
        )
    if array.size == 0:
        raise InvalidInputError(f"image array has shape {array.shape}; it is empty")
    values = _to_unit_float_or_uint8(array)
    has_alpha = values.shape[2] in (2, 4)
    color = values[:, :, :-1] if has_alpha else values
    if color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    if has_alpha:
        alpha = values[:, :, -1:].astype(np.float32)
        if values.dtype == np.uint8:
            alpha /= 255.0
            color = color.astype(np.float32) / 255.0
        color = color * alpha + (1.0 - alpha)
    if color.dtype != np.uint8:
        color = np.clip(np.rint(color * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(color)


def _to_unit_float_or_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 stays uint8; everything else becomes float32 in [0, 1]."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        peak = int(array.max()) if array.size else 0
        if array.min() < 0:
            raise InvalidInputError("image array has negative integer values")
        # 16-bit data (uint16 or Pillow's 32-bit "I" holding 16-bit samples) vs 8-bit in wider ints
        full_scale = 255.0 if peak <= 255 else 65535.0
        if peak > 65535:
            full_scale = float(np.iinfo(array.dtype).max)
        return array.astype(np.float32) / full_scale
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.all(np.isfinite(values)):
            raise InvalidInputError("image array contains NaN or infinite values")
        if values.max(initial=0.0) > 1.0 + 1e-6:
            values = values / 255.0  # floats in 0..255
        return np.clip(values, 0.0, 1.0)
    raise InvalidInputError(f"image array has unsupported dtype {array.dtype}")


def _downscale_array(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    height, width = pixels.shape[:2]
    long_side = max(width, height)
    if long_side <= max_side:
        return pixels, 1.0
    import cv2

    factor = max_side / long_side
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), long_side / max(size)
