"""What an image file says about itself, read before a single pixel is decoded.

``read_header`` walks the container (JPEG markers, PNG chunks, the WebP RIFF)
in pure Python, linear in the byte count, and refuses what would cost too
much to decode or is not a plain still image:

- JPEG: marker and metadata (APPn/COM) counts and bytes, one frame of 8-bit
  baseline, extended or progressive Huffman coding only, 1/3/4 components,
  at most ``max_jpeg_scans`` scans, and for multi-scan files (they keep every
  DCT coefficient in memory) a coefficient buffer and a scans x blocks work
  budget: a progressive file repeating one tiny scan 1,000 times is refused
  here in microseconds instead of decoding for half a minute.
- PNG: IHDR first and valid, chunk and ancillary-byte counts, no animation
  (APNG), a decoded-bytes budget by bit depth and band count.
- WebP: the VP8/VP8L/VP8X size fields, no animation, the same pixel budgets.

Every refusal is a typed error with its reason code; messages name sizes and
counts only, never image content.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from domain.errors import ImageTooLarge, ImageUnreadable, UnsupportedImageFormat

from .limits import ImageLimits

# Frame headers (SOFn) by coding process; only Huffman 8-bit processes are decoded.
_JPEG_ACCEPTED_FRAMES = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
_JPEG_OTHER_FRAMES = {
    0xC3: "lossless",
    0xC5: "differential sequential",
    0xC6: "differential progressive",
    0xC7: "differential lossless",
    0xC9: "arithmetic extended",
    0xCA: "arithmetic progressive",
    0xCB: "arithmetic lossless",
    0xCD: "differential arithmetic sequential",
    0xCE: "differential arithmetic progressive",
    0xCF: "differential arithmetic lossless",
}
_SOS, _EOI, _SOI, _DNL = 0xDA, 0xD9, 0xD8, 0xDC
# The end of entropy-coded data: 0xFF followed by neither a stuffed zero nor a restart marker.
_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> (samples per pixel, allowed bit depths)
_PNG_COLOUR_TYPES = {
    0: (1, (1, 2, 4, 8, 16)),  # grey
    2: (3, (8, 16)),  # RGB
    3: (1, (1, 2, 4, 8)),  # palette (decoded to RGB(A))
    4: (2, (8, 16)),  # grey + alpha
    6: (4, (8, 16)),  # RGBA
}

_WEBP_ANIMATION, _WEBP_ALPHA = 0x02, 0x10


@dataclass(frozen=True)
class ImageHeader:
    """The facts the decoder plans with: format, size, bands, bits per sample."""

    kind: str  # "JPEG", "PNG" or "WEBP"
    width: int
    height: int
    bands: int  # samples per pixel as stored (palette: 1; palettes expand when decoded)
    bits: int  # bits per sample as stored
    scans: int = 1  # JPEG scans

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def decoded_bytes(self, scale: int = 1) -> int:
        """Bytes of the decoded pixels at ``1/scale`` of the size (bands x bytes per sample)."""
        width, height = -(-self.width // scale), -(-self.height // scale)
        return width * height * max(self.bands, 3) * max(1, self.bits // 8)


def read_header(kind: str, data: bytes, limits: ImageLimits) -> ImageHeader:
    """The checked header of ``data`` (already sniffed as ``kind``); raises typed errors."""
    reader = {"JPEG": _jpeg_header, "PNG": _png_header, "WEBP": _webp_header}[kind]
    header = reader(data, limits)
    if header.width <= 0 or header.height <= 0:
        raise ImageUnreadable(f"{kind} image declares {header.width}x{header.height} pixels")
    check_dimensions(header, limits)
    return header


def check_dimensions(header: ImageHeader, limits: ImageLimits) -> None:
    """Sides and pixel count from the header, against the limits for its format."""
    width, height, kind = header.width, header.height, header.kind
    max_pixels = limits.max_jpeg_pixels if kind == "JPEG" else limits.max_pixels
    if width * height > max_pixels or max(width, height) > limits.max_side:
        raise ImageTooLarge(
            f"{kind} image is {width}x{height} ({width * height / 1e6:.1f} MP, "
            f"{width * height} pixels); limits are {max_pixels / 1e6:.0f} MP and "
            f"{limits.max_side} px per side"
        )
    if kind != "JPEG" and header.decoded_bytes() > limits.max_decoded_bytes:
        raise ImageTooLarge(
            f"{kind} image of {width}x{height}, {header.bands} band(s) of {header.bits} bits "
            f"decodes to {header.decoded_bytes() / 2**20:.0f} MiB; limit "
            f"{limits.max_decoded_bytes / 2**20:.0f} MiB"
        )


# --- JPEG ---------------------------------------------------------------------------


@dataclass
class _JpegFrame:
    width: int
    height: int
    components: list[tuple[int, int]]  # (horizontal, vertical) sampling factors
    progressive: bool

    def blocks(self) -> int:
        """8x8 coefficient blocks of all components (what a multi-scan decode keeps)."""
        h_max = max(h for h, _ in self.components)
        v_max = max(v for _, v in self.components)
        mcus_x = -(-self.width // (8 * h_max))
        mcus_y = -(-self.height // (8 * v_max))
        return sum(mcus_x * h * mcus_y * v for h, v in self.components)


def _jpeg_header(data: bytes, limits: ImageLimits) -> ImageHeader:
    at, end = 2, len(data)
    markers = metadata_segments = metadata_bytes = scans = 0
    frame: _JpegFrame | None = None
    while True:
        if at >= end:
            if scans:
                break  # no EOI after image data: the decoder judges whether the data is complete
            raise ImageUnreadable("JPEG image ends before its image data (truncated)")
        if data[at] != 0xFF:
            raise ImageUnreadable("JPEG image has corrupt marker structure")
        while at < end and data[at] == 0xFF:  # fill bytes
            at += 1
        if at >= end:
            raise ImageUnreadable("JPEG image ends inside a marker (truncated)")
        marker = data[at]
        at += 1
        if marker == _EOI:
            break
        if marker == _SOI or marker == 0x00:
            raise ImageUnreadable("JPEG image has corrupt marker structure")
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # restart / TEM: no length
            continue
        if at + 2 > end:
            raise ImageUnreadable("JPEG image ends inside a marker (truncated)")
        (length,) = struct.unpack_from(">H", data, at)
        if length < 2 or at + length > end:
            raise ImageUnreadable("JPEG image has a marker segment past its end (truncated)")
        segment = data[at + 2 : at + length]
        at += length
        markers += 1
        if markers > limits.max_jpeg_markers:
            raise ImageTooLarge(f"JPEG image has over {limits.max_jpeg_markers} marker segments")
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn, COM
            metadata_segments += 1
            metadata_bytes += length
            if metadata_segments > limits.max_metadata_segments:
                raise ImageTooLarge(
                    f"JPEG image has over {limits.max_metadata_segments} metadata (APPn/COM) "
                    "segments"
                )
            if metadata_bytes > limits.max_metadata_bytes:
                raise ImageTooLarge(
                    f"JPEG image carries over {limits.max_metadata_bytes // 2**20} MiB of "
                    "metadata (APPn/COM)"
                )
        elif marker in _JPEG_OTHER_FRAMES:
            raise UnsupportedImageFormat(
                f"JPEG {_JPEG_OTHER_FRAMES[marker]} coding is not accepted; allowed: "
                "baseline, extended and progressive Huffman JPEG"
            )
        elif marker in _JPEG_ACCEPTED_FRAMES:
            if frame is not None:
                raise ImageUnreadable("JPEG image has more than one frame header")
            frame = _jpeg_frame(segment, progressive=marker == 0xC2)
        elif marker == _DNL:
            raise ImageUnreadable("JPEG image defines its height late (DNL): not accepted")
        elif marker == _SOS:
            if frame is None:
                raise ImageUnreadable("JPEG image has image data before its frame header")
            scans += 1
            _check_scan_budget(frame, scans, limits)
            found = _ENTROPY_END.search(data, at)
            at = found.start() if found else end
    if frame is None or not scans:
        raise ImageUnreadable("JPEG image has no image data")
    return ImageHeader(
        "JPEG", frame.width, frame.height, len(frame.components), bits=8, scans=scans
    )


def _jpeg_frame(segment: bytes, progressive: bool) -> _JpegFrame:
    if len(segment) < 6:
        raise ImageUnreadable("JPEG image has a truncated frame header")
    precision, height, width, count = struct.unpack_from(">BHHB", segment)
    if precision != 8:
        raise UnsupportedImageFormat(f"JPEG with {precision}-bit samples is not accepted (8 only)")
    if count not in (1, 3, 4) or len(segment) < 6 + 3 * count:
        raise ImageUnreadable(f"JPEG image declares {count} colour components")
    sampling = []
    for index in range(count):
        factors = segment[6 + 3 * index + 1]
        horizontal, vertical = factors >> 4, factors & 0x0F
        if not (1 <= horizontal <= 4 and 1 <= vertical <= 4):
            raise ImageUnreadable("JPEG image has invalid sampling factors")
        sampling.append((horizontal, vertical))
    return _JpegFrame(width, height, sampling, progressive)


def _check_scan_budget(frame: _JpegFrame, scans: int, limits: ImageLimits) -> None:
    if scans > limits.max_jpeg_scans:
        raise ImageTooLarge(f"JPEG image has over {limits.max_jpeg_scans} scans")
    if scans < 2:
        return
    if frame.width * frame.height > limits.max_jpeg_pixels:
        return  # refused by its size right after the walk
    blocks = frame.blocks()
    if blocks * 128 > limits.max_coefficient_bytes:
        raise ImageTooLarge(
            f"multi-scan JPEG of {frame.width}x{frame.height} needs "
            f"{blocks * 128 / 2**20:.0f} MiB of coefficients; limit "
            f"{limits.max_coefficient_bytes / 2**20:.0f} MiB"
        )
    if blocks * scans > limits.max_scan_blocks:
        raise ImageTooLarge(
            f"JPEG image of {frame.width}x{frame.height} has {scans}+ scans: over the decoding "
            f"work budget of {limits.max_scan_blocks / 1e6:.0f} M block-scans"
        )


# --- PNG ----------------------------------------------------------------------------


def _png_header(data: bytes, limits: ImageLimits) -> ImageHeader:
    at, end = len(_PNG_SIGNATURE), len(data)
    chunks = ancillary_bytes = 0
    header: ImageHeader | None = None
    while at + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, at)
        at += 12 + length
        chunks += 1
        if chunks > limits.max_chunks:
            raise ImageTooLarge(f"PNG image has over {limits.max_chunks} chunks")
        if header is None:
            if kind != b"IHDR" or length != 13 or at > end:
                raise ImageUnreadable("PNG image does not start with a valid IHDR chunk")
            header = _png_ihdr(data[at - 4 - length : at - 4])
        elif kind == b"acTL":
            raise UnsupportedImageFormat("animated PNG (APNG) is not accepted: send one still")
        elif kind == b"IEND":
            break
        elif kind[0:1].islower():  # ancillary: text, ICC profile, EXIF, private chunks
            ancillary_bytes += length
            if ancillary_bytes > limits.max_metadata_bytes:
                raise ImageTooLarge(
                    f"PNG image carries over {limits.max_metadata_bytes // 2**20} MiB of "
                    "ancillary chunks"
                )
    if header is None:
        raise ImageUnreadable("PNG image ends before its header (truncated)")
    return header


def _png_ihdr(body: bytes) -> ImageHeader:
    width, height, bits, colour_type, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", body
    )
    bands, depths = _PNG_COLOUR_TYPES.get(colour_type, (0, ()))
    if bits not in depths or compression or filtering or interlace > 1:
        raise ImageUnreadable(
            f"PNG image has an invalid header (colour type {colour_type}, {bits}-bit)"
        )
    return ImageHeader("PNG", width, height, bands, bits)


# --- WebP ---------------------------------------------------------------------------


def _webp_header(data: bytes, limits: ImageLimits) -> ImageHeader:
    at, end = 12, min(len(data), 8 + struct.unpack_from("<I", data, 4)[0])
    chunks = 0
    while at + 8 <= end:
        kind, length = struct.unpack_from("<4sI", data, at)
        body = data[at + 8 : at + 8 + min(length, 32)]
        at += 8 + length + (length & 1)
        chunks += 1
        if chunks > limits.max_chunks:
            raise ImageTooLarge(f"WebP image has over {limits.max_chunks} chunks")
        if kind == b"VP8X" and len(body) >= 10:
            flags = body[0]
            if flags & _WEBP_ANIMATION:
                raise UnsupportedImageFormat("animated WebP is not accepted: send one still")
            width = 1 + int.from_bytes(body[4:7], "little")
            height = 1 + int.from_bytes(body[7:10], "little")
            return ImageHeader("WEBP", width, height, 4 if flags & _WEBP_ALPHA else 3, 8)
        if kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
            width, height = struct.unpack_from("<HH", body, 6)
            return ImageHeader("WEBP", width & 0x3FFF, height & 0x3FFF, 3, 8)
        if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
            bits = int.from_bytes(body[1:5], "little")
            width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
            return ImageHeader("WEBP", width, height, 4 if bits >> 28 & 1 else 3, 8)
        if kind in (b"VP8X", b"VP8 ", b"VP8L"):
            break
    raise ImageUnreadable("WebP image has no valid image header (truncated or corrupt)")
