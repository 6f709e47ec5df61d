"""The budgets an untrusted image is decoded under (one set, used by every decode).

Refusals from these limits are ``ImageTooLarge`` (INPUT_TOO_LARGE). The
numbers keep one decode within about 300 MiB of memory and well under 2 s of
CPU on one core: decoded pixels are at most 16 MP (48 MiB of RGB), larger
JPEGs are decoded at 1/2, 1/4 or 1/8 scale by the JPEG decoder itself (a
48 MP phone photo arrives as 12 MP), and the decoding process is killed past
``DecodeBudget`` whatever the file claims (``imaging.bounded``).
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 2**20


@dataclass(frozen=True)
class ImageLimits:
    """What a file may declare before any pixel is decoded."""

    max_bytes: int = 25 * MiB
    max_side: int = 12_000
    # Decoded pixels (after JPEG reduced-scale decoding) and the bytes they take
    # as stored: width x height x bands x bytes per sample (16-bit counts twice).
    max_pixels: int = 16_000_000
    max_decoded_bytes: int = 96 * MiB
    # A JPEG header may declare more: it is decoded at a reduced scale to fit max_pixels.
    max_jpeg_pixels: int = 50_000_000
    # JPEG structure: progressive files have ~10 scans, phones' metadata ~10 segments
    # (a depth map in extended XMP: ~100 segments of 64 KiB).
    max_jpeg_scans: int = 100
    max_jpeg_markers: int = 1024
    max_metadata_segments: int = 256
    max_metadata_bytes: int = 16 * MiB
    # Multi-scan JPEGs keep every DCT coefficient (2 bytes each) until the last scan,
    # and every scan passes over all of them.
    max_coefficient_bytes: int = 128 * MiB
    max_scan_blocks: int = 25_000_000
    max_chunks: int = 10_000  # PNG / WebP chunks


@dataclass(frozen=True)
class DecodeBudget:
    """What one decode may spend, enforced on the decoding process from outside."""

    cpu_seconds: float = 2.0
    memory_bytes: int = 300 * MiB  # address space the decoding process may add
    # Wall-clock backstop for a starved machine: not the image's fault, so retryable.
    wall_seconds: float = 30.0


DEFAULT_LIMITS = ImageLimits()
DEFAULT_BUDGET = DecodeBudget()
