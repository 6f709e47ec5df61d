"""Decode untrusted images in separate processes, each decode under a CPU and memory budget.

Why a process: checks on the file's structure (``imaging.headers``) stop the
attacks we know of, but the decoders are C libraries fed hostile bytes. A
decoding process (``python -m imaging.decoding_process``) bounds what any
file can cost, known attack or not:

- memory: the process limits its own address space (``RLIMIT_AS``) to what it
  needed after start-up plus ``DecodeBudget.memory_bytes``; an allocation past
  it fails inside the decoder and the image is refused (INPUT_TOO_LARGE);
- CPU: the caller watches the process's CPU time (``/proc/PID/stat``) and
  kills it past ``DecodeBudget.cpu_seconds`` (INPUT_TOO_LARGE); CPU time, not
  wall time, so a busy machine does not refuse good images. A decode that
  makes no progress for ``wall_seconds`` is killed too, with a retryable
  ``DecodingUnavailable`` (the machine is starved: not the image's fault);
- isolation: the process gets an empty environment (no keys, no settings),
  and answers in a fixed binary framing (a small JSON header, then raw pixels)
  that the caller validates: nothing it sends is unpickled or trusted;
- a crash (a decoder bug) kills only that process: the image is refused as
  unreadable and the next decode starts a fresh process.

Processes are reused (start-up costs ~0.2 s) by a small pool per caller
process, at most ``MAX_PROCESSES`` at once; callers beyond wait their turn.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from domain.errors import ImageTooLarge, ImageUnreadable, InputRejected, UnsupportedImageFormat

from .limits import DEFAULT_BUDGET, DEFAULT_LIMITS, DecodeBudget, ImageLimits

MAX_PROCESSES = max(1, min(4, os.cpu_count() or 1))
_POLL_S = 0.02
_START_TIMEOUT_S = 60.0
_REFUSALS: dict[str, type[InputRejected]] = {
    cls.__name__: cls for cls in (ImageTooLarge, ImageUnreadable, UnsupportedImageFormat)
}
_HEADER = struct.Struct(">I")
_LENGTH = struct.Struct(">Q")


class DecodingUnavailable(RuntimeError):
    """No decoding process could run the decode (start-up failed, machine starved): retryable."""


@dataclass(frozen=True)
class DecodeStats:
    """What one decode cost in its process."""

    cpu_seconds: float
    wall_seconds: float
    peak_rss_bytes: int  # the decoding process's peak resident memory during this decode
    baseline_rss_bytes: int  # its resident memory before the decode

    @property
    def extra_rss_bytes(self) -> int:
        return max(0, self.peak_rss_bytes - self.baseline_rss_bytes)


@dataclass(frozen=True)
class Decoded:
    pixels: np.ndarray  # (H, W, 3) uint8
    stats: DecodeStats


@dataclass(frozen=True)
class Outcome:
    """A decode's pixels or refusal, and what it cost (for measurements)."""

    decoded: Decoded | None
    refusal: InputRejected | None
    stats: DecodeStats


class _DecodingProcess:
    def __init__(self, budget: DecodeBudget) -> None:
        self.budget = budget
        self.process = subprocess.Popen(
            [sys.executable, "-s", "-m", "imaging.decoding_process", str(budget.memory_bytes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
            cwd=_package_root(),
        )
        self.started = False

    def wait_ready(self) -> None:
        if self.started:
            return
        if not self._readable(_START_TIMEOUT_S) or self._read_exact(5) != b"READY":
            self.kill()
            raise DecodingUnavailable("the image decoding process did not start")
        self.started = True

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def run(self, data: bytes, limits: ImageLimits) -> Outcome:
        self.wait_ready()
        assert self.process.stdin is not None
        request = json.dumps(limits.__dict__).encode()
        started, cpu_before = time.monotonic(), self._cpu_seconds()
        try:
            self.process.stdin.write(_HEADER.pack(len(request)) + request)
            self.process.stdin.write(_LENGTH.pack(len(data)))
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return self._crashed(started, cpu_before)
        while not self._readable(_POLL_S):
            cpu = self._cpu_seconds() - cpu_before
            wall = time.monotonic() - started
            if not self.alive():
                return self._crashed(started, cpu_before)
            if cpu > self.budget.cpu_seconds:
                peak = _peak_rss(self.process.pid)
                self.kill()
                stats = DecodeStats(cpu, wall, peak, 0)
                refusal = ImageTooLarge(
                    f"image decoding exceeded its budget of {self.budget.cpu_seconds:g} s of CPU"
                )
                return Outcome(None, refusal, stats)
            if wall > self.budget.wall_seconds:
                self.kill()
                raise DecodingUnavailable(
                    f"image decoding made no progress in {self.budget.wall_seconds:g} s"
                )
        return self._answer(started, cpu_before, limits)

    def _answer(self, started: float, cpu_before: float, limits: ImageLimits) -> Outcome:
        try:
            (size,) = _HEADER.unpack(self._read_exact(_HEADER.size))
            if size > 64 * 1024:
                raise ValueError("oversized answer header")
            header = json.loads(self._read_exact(size))
        except (ValueError, EOFError, OSError):
            return self._crashed(started, cpu_before)
        stats = DecodeStats(
            cpu_seconds=self._cpu_seconds() - cpu_before,
            wall_seconds=time.monotonic() - started,
            peak_rss_bytes=int(header.get("peak_rss", 0)),
            baseline_rss_bytes=int(header.get("baseline_rss", 0)),
        )
        if not header.get("ok"):
            kind = _REFUSALS.get(str(header.get("error")), ImageUnreadable)
            return Outcome(None, kind(_clean_message(header.get("message"))), stats)
        height, width = (int(side) for side in header["shape"])
        if not (height > 0 and width > 0 and height * width <= limits.max_pixels):
            self.kill()
            return Outcome(None, ImageUnreadable("image decoder answered nonsense"), stats)
        pixels = np.empty((height, width, 3), np.uint8)
        try:
            self._read_into(memoryview(pixels).cast("B"))
        except (EOFError, OSError):
            return self._crashed(started, cpu_before)
        return Outcome(Decoded(pixels, stats), None, stats)

    def _crashed(self, started: float, cpu_before: float) -> Outcome:
        cpu = self._cpu_seconds() - cpu_before
        self.kill()
        code = self.process.returncode
        stats = DecodeStats(cpu, time.monotonic() - started, 0, 0)
        if code in (-signal.SIGKILL, -signal.SIGXCPU):
            message = "image decoding exceeded its budget"
            return Outcome(None, ImageTooLarge(message), stats)
        return Outcome(None, ImageUnreadable("image decoder failed on this file"), stats)

    def _readable(self, timeout: float) -> bool:
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        return bool(readable)

    def _read_exact(self, size: int) -> bytes:
        assert self.process.stdout is not None
        data = self.process.stdout.read(size)
        if data is None or len(data) != size:
            raise EOFError("decoding process closed its answer early")
        return data

    def _read_into(self, buffer: memoryview) -> None:
        assert self.process.stdout is not None
        done = 0
        while done < len(buffer):
            got = self.process.stdout.readinto(buffer[done:])
            if not got:
                raise EOFError("decoding process closed its answer early")
            done += got

    def _cpu_seconds(self) -> float:
        try:
            with open(f"/proc/{self.process.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        except (OSError, IndexError, ValueError):
            return 0.0


class DecoderPool:
    """Up to ``size`` reusable decoding processes, shared by the threads of one process."""

    def __init__(self, size: int = MAX_PROCESSES, budget: DecodeBudget = DEFAULT_BUDGET) -> None:
        self.size = size
        self.budget = budget
        self._idle: list[_DecodingProcess] = []
        self._running = 0
        self._free = threading.Condition()

    def run(self, data: bytes, limits: ImageLimits) -> Outcome:
        worker = self._acquire()
        healthy = False
        try:
            outcome = worker.run(data, limits)
            healthy = worker.alive()
            return outcome
        finally:
            self._release(worker, healthy)

    def close(self) -> None:
        with self._free:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def _acquire(self) -> _DecodingProcess:
        with self._free:
            while not self._idle and self._running >= self.size:
                self._free.wait()
            self._running += 1
            if self._idle:
                return self._idle.pop()
        try:
            return _DecodingProcess(self.budget)
        except BaseException:
            with self._free:
                self._running -= 1
                self._free.notify()
            raise

    def _release(self, worker: _DecodingProcess, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        with self._free:
            self._running -= 1
            if healthy:
                self._idle.append(worker)
            self._free.notify()


_pools: dict[tuple[int, DecodeBudget], DecoderPool] = {}
_pools_lock = threading.Lock()


def pool(budget: DecodeBudget = DEFAULT_BUDGET) -> DecoderPool:
    """This process's pool for ``budget`` (a forked child gets its own)."""
    with _pools_lock:
        key = (os.getpid(), budget)
        if key not in _pools:
            _pools[key] = DecoderPool(budget=budget)
        return _pools[key]


def measure(
    data: bytes, limits: ImageLimits = DEFAULT_LIMITS, budget: DecodeBudget = DEFAULT_BUDGET
) -> Outcome:
    """Decode in a decoding process; the pixels or the refusal, with what it cost."""
    return pool(budget).run(data, limits)


def decode(
    data: bytes, limits: ImageLimits = DEFAULT_LIMITS, budget: DecodeBudget = DEFAULT_BUDGET
) -> Decoded:
    """Decode in a decoding process; raises the typed refusal."""
    outcome = measure(data, limits, budget)
    if outcome.refusal is not None:
        raise outcome.refusal
    assert outcome.decoded is not None
    return outcome.decoded


def _clean_message(message: object) -> str:
    text = "".join(c if c.isprintable() and c.isascii() else "?" for c in str(message or ""))
    return text[:240] or "image refused"


def _peak_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
