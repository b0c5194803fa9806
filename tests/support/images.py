"""Images made by the tests with Pillow: every accepted format, a rotated photo, a bomb, a cut-off file."""

import struct
import zlib
from io import BytesIO

from PIL import Image

RED = (220, 20, 20)
BLUE = (20, 20, 220)
# The EXIF tag that says how a camera was held; 6 means "rotate 90 degrees clockwise to display".
ORIENTATION = 0x0112


def two_colour(size: tuple[int, int] = (320, 200), mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue, so that a rotation shows in the pixels."""
    width, height = size
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image.convert(mode)


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def png(size: tuple[int, int] = (320, 200)) -> bytes:
    return encode(two_colour(size), "PNG")


def jpeg(size: tuple[int, int] = (320, 200)) -> bytes:
    return encode(two_colour(size), "JPEG", quality=90)


def noisy_png(size: tuple[int, int] = (600, 600)) -> bytes:
    """Random grey pixels: a PNG that compresses badly, for tests about sizes in bytes."""
    return encode(Image.effect_noise(size, 100), "PNG")


def transparent_gif(size: tuple[int, int] = (300, 300)) -> bytes:
    """A palette GIF whose corners are transparent."""
    image = Image.new("P", size, 0)
    image.putpalette([255, 255, 255, *RED, *BLUE] + [0] * (256 - 3) * 3)
    image.paste(1, (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4))
    return encode(image, "GIF", transparency=0)


def webp(size: tuple[int, int] = (640, 480)) -> bytes:
    return encode(two_colour(size, "RGBA"), "WEBP", quality=90)


def rotated_jpeg(stored_size: tuple[int, int] = (400, 200)) -> bytes:
    """Stored landscape (red left, blue right) but tagged Orientation=6: upright it is portrait,
    red on top, blue at the bottom."""
    image = two_colour(stored_size)
    exif = image.getexif()
    exif[ORIENTATION] = 6
    return encode(image, "JPEG", quality=90, exif=exif.tobytes())


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    """The first part of a file, as an interrupted upload or copy leaves it."""
    return data[: int(len(data) * keep)]


def png_declaring(width: int, height: int, every_row: bool = False) -> bytes:
    """A decompression bomb: a tiny PNG whose header declares width x height pixels.

    Its data holds a few rows, or with `every_row` all of them (zeros compress a thousandfold).
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    if every_row:  # each row is a filter byte and a byte a pixel
        compressor, block = zlib.compressobj(9), b"\0" * (1 << 20)
        remaining, parts = height * (width + 1), []
        while remaining:
            parts.append(compressor.compress(block[: min(remaining, len(block))]))
            remaining -= min(remaining, len(block))
        pixels = b"".join(parts) + compressor.flush()
    else:
        pixels = zlib.compress(b"\0" * 4096, 9)  # a few rows; decoding the rest would need gigabytes
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def opened(data: bytes) -> Image.Image:
    image = Image.open(BytesIO(data))
    image.load()
    return image


def colour_at(image: Image.Image, x: int, y: int) -> str:
    """'red', 'blue' or 'other' for the pixel at (x, y)."""
    red, green, blue = image.convert("RGB").getpixel((x, y))
    if red > 150 and blue < 100 and green < 100:
        return "red"
    if blue > 150 and red < 100 and green < 100:
        return "blue"
    return "other"
