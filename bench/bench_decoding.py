"""Hostile images: what a plain Pillow decode costs them, and what the bounded decoder does.

    python -m bench.bench_decoding            # the attack images of issue 10, and a photo

For each image: the plain decode (``Image.open(...).load()`` then RGB, as
ingest did before bounded decoding) in a fresh process, its wall time and
peak resident memory; then ``imaging.decode`` through the decoding process:
its outcome, CPU time and peak memory above the process's baseline. Also the
price of isolation on an ordinary photo: the bounded decode against the same
decode in-process, as a ratio measured in this run.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from bench.timing import median_ms
from imaging import bounded
from imaging.decode import decode_pixels
from models.lifecycle.samples import fetch_samples
from tests.support.hostile_images import png_of_zeros, scan_bomb

PLAIN_DECODE = """
import io, sys, time
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
data = sys.stdin.buffer.read()
start = time.perf_counter()
try:
    Image.open(io.BytesIO(data)).convert("RGB")
    outcome = "decoded"
except Exception as error:
    outcome = type(error).__name__
seconds = time.perf_counter() - start
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(outcome, seconds, peak)
"""
PLAIN_TIMEOUT_S = 120


def plain(data: bytes) -> str:
    """Outcome, seconds and peak MiB of a plain Pillow decode in a fresh process."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", PLAIN_DECODE],
            input=data,
            capture_output=True,
            timeout=PLAIN_TIMEOUT_S,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return f"still decoding after {PLAIN_TIMEOUT_S} s"
    outcome, seconds, peak_kib = done.stdout.split()
    return f"{outcome.decode()}, {float(seconds):.1f} s, peak {int(peak_kib) / 1024:.0f} MiB"


def bounded_decode(data: bytes) -> str:
    started = time.perf_counter()
    outcome = bounded.measure(data)
    wall = time.perf_counter() - started
    what = type(outcome.refusal).__name__ if outcome.refusal else "decoded"
    return (
        f"{what}, {wall:.2f} s wall, {outcome.stats.cpu_seconds:.2f} s CPU, "
        f"+{outcome.stats.extra_rss_bytes / 2**20:.0f} MiB"
    )


def main() -> None:
    photos = fetch_samples()
    photo = (photos / "obama.jpg").read_bytes()
    cases = {
        "progressive JPEG, one scan x100 (6000x6000)": scan_bomb(6000, 100),
        "progressive JPEG, one scan x1000 (6000x6000)": scan_bomb(6000, 1000),
        "PNG 7000x7000 grey": png_of_zeros(7000, 7000),
        "PNG 4000x4000 16-bit RGBA": png_of_zeros(4000, 4000, colour_type=6, bits=16),
        "JPEG + 24.8 MB of empty COM markers": photo[:2]
        + b"\xff\xfe\x00\x02" * 6_200_000
        + photo[2:],
        "photo obama.jpg (910x1137)": photo,
    }
    bounded.measure(photo)  # start the decoding process outside the measurements
    print(f"{'image':48} {'bytes':>10}  plain Pillow decode | bounded decode")
    for name, data in cases.items():
        print(f"{name:48} {len(data):>10}  {plain(data)} | {bounded_decode(data)}", flush=True)

    big = io.BytesIO()
    Image.open(io.BytesIO(photo)).resize((4000, 3000)).save(big, "JPEG", quality=90)
    for name, data in (("910x1137 JPEG", photo), ("4000x3000 JPEG", big.getvalue())):
        in_process = median_ms(lambda data=data: decode_pixels(data), repeat=15, warm_up=True)
        isolated = median_ms(lambda data=data: bounded.decode(data), repeat=15, warm_up=True)
        print(
            f"isolation cost, {name}: in-process {in_process:.1f} ms, decoding process "
            f"{isolated:.1f} ms, ratio {isolated / in_process:.2f}"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
