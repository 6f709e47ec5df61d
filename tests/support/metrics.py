"""Reading a pool's Prometheus endpoint in tests."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

from .temporal import IdflowStack


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(stack: IdflowStack, pool: str) -> dict[str, float]:
    """``metric{labels}`` -> value, from the pool's /metrics."""
    port = getattr(stack.settings, f"{pool}_metrics_port")
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = [f'{key}="{label}"' for key, label in labels.items()]
    return sum(
        v
        for key, v in samples.items()
        if re.fullmatch(rf"{name}(\{{.*\}})?", key) and all(w in key for w in wanted)
    )
