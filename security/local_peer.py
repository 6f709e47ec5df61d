"""Which local OS user owns the other end of a loopback TCP connection (Linux).

The dev Web UI cannot send a bearer token to the codec server (see
``security.codec_server``), and a token in its codec endpoint URL would be
readable by every local user (the server's argv, the UI's unauthenticated
``/api/v1/settings``). Instead the dev codec server may serve requests whose
socket belongs to its own OS user: the same user that can read the dev key
files anyway. The kernel reports each socket's owner in ``/proc/net/tcp``
and ``/proc/net/tcp6``; elsewhere the owner is unknown and such requests are
refused.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

PROC_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_ESTABLISHED = "01"


def _proc_address(host: str, port: int) -> str:
    """``host:port`` as /proc/net/tcp spells it: the address in 32-bit host-order words, hex."""
    packed = ipaddress.ip_address(host.split("%", 1)[0]).packed
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


def socket_owner(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The uid owning the socket at ``peer`` connected to our ``local`` address, if known."""
    wanted = (_proc_address(*peer), _proc_address(*local))
    for table in PROC_TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 7 and (fields[1], fields[2]) == wanted and fields[3] == _ESTABLISHED:
                return int(fields[7])
    return None
