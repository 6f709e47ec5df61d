"""The decoding process: reads requests on stdin, answers pixels or a refusal on stdout.

Started by ``imaging.bounded`` with an empty environment. After importing the
decoder it limits its own address space to what it uses now plus the memory
budget (argv[1]), says READY, then serves one request at a time:

    request:  u32 length, JSON limits | u64 length, image bytes
    answer:   u32 length, JSON {"ok": true, "shape": [h, w], ...} | h*w*3 pixel bytes
              or u32 length, JSON {"ok": false, "error": <refusal class>, "message": ...}

Every answer carries the resident memory before the decode and its peak
during it (the peak is reset before each decode), for measurements.
"""

from __future__ import annotations

import json
import resource
import signal
import struct
import sys

from domain.errors import InputRejected
from imaging.decode import decode_pixels
from imaging.limits import ImageLimits

_HEADER = struct.Struct(">I")
_LENGTH = struct.Struct(">Q")
_ALARM_S = 120  # a last resort if the caller is gone: SIGALRM ends this process


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _read(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def _limit_memory(budget: int) -> None:
    current = _status_kib("VmSize:") * 1024
    resource.setrlimit(resource.RLIMIT_AS, (current + budget, current + budget))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def serve(budget: int) -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    _limit_memory(budget)
    stdout.write(b"READY")
    stdout.flush()
    while True:
        try:
            (size,) = _HEADER.unpack(_read(stdin, _HEADER.size))
            limits = ImageLimits(**json.loads(_read(stdin, size)))
            (length,) = _LENGTH.unpack(_read(stdin, _LENGTH.size))
            data = _read(stdin, length)
        except EOFError:
            return  # the caller closed the pipe: done
        baseline = _status_kib("VmRSS:") * 1024
        _reset_peak()
        signal.alarm(_ALARM_S)
        try:
            pixels = decode_pixels(data, limits)
            answer = {"ok": True, "shape": list(pixels.shape[:2])}
        except InputRejected as refusal:
            pixels, answer = None, {"ok": False, "error": type(refusal).__name__}
            answer["message"] = str(refusal)
        except MemoryError:
            pixels, answer = None, {"ok": False, "error": "ImageTooLarge"}
            answer["message"] = "image needs more memory than its decoding budget"
        except Exception as error:  # a decoder bug met by hostile bytes: unreadable
            pixels, answer = None, {"ok": False, "error": "ImageUnreadable"}
            answer["message"] = f"image cannot be decoded ({type(error).__name__})"
        signal.alarm(0)
        del data
        answer |= {"baseline_rss": baseline, "peak_rss": _status_kib("VmHWM:") * 1024}
        header = json.dumps(answer).encode()
        stdout.write(_HEADER.pack(len(header)) + header)
        if pixels is not None:
            stdout.write(memoryview(pixels).cast("B"))
        stdout.flush()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
