"""Security settings, read from ``IDFLOW_*`` variables next to ``settings.Settings``.

| variable                         | default                                      |
|----------------------------------|----------------------------------------------|
| ``IDFLOW_RETENTION_DAYS``        | 30: personal data (blobs) kept per verification |
| ``IDFLOW_RETENTION_SWEEP_SECONDS`` | 3600: how often the retention schedule runs |
| ``IDFLOW_HISTORY_RETENTION_DAYS`` | 30: closed histories kept (dev server namespace) |
| ``IDFLOW_CODEC_HOST``            | 127.0.0.1                                    |
| ``IDFLOW_CODEC_PORT``            | Web UI port + 1 (8234)                       |
| ``IDFLOW_CODEC_ALLOWED_ORIGINS`` | the dev Web UI: http://localhost:8233,http://127.0.0.1:8233 |
| ``IDFLOW_CODEC_SAME_USER``       | 0; 1: token-less requests of this OS user's sockets (dev UI) |

Same-user access is explained in ``security.codec_server``. Keys and staff
tokens have their own loaders (``security.keys``, ``security.staff_tokens``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from settings import Settings, env_int


@dataclass(frozen=True)
class SecurityConfig:
    retention_days: int = 30
    retention_sweep_seconds: int = 3600
    history_retention_days: int = 30
    codec_host: str = "127.0.0.1"
    codec_port: int = 8234
    codec_allowed_origins: tuple[str, ...] = ()
    codec_same_user: bool = False

    @property
    def codec_url(self) -> str:
        return f"http://{self.codec_host}:{self.codec_port}"

    @classmethod
    def from_env(cls, settings: Settings) -> SecurityConfig:
        ui = settings.temporal_ui_port
        origins = os.environ.get("IDFLOW_CODEC_ALLOWED_ORIGINS")
        return cls(
            retention_days=env_int("IDFLOW_RETENTION_DAYS", 30),
            retention_sweep_seconds=env_int("IDFLOW_RETENTION_SWEEP_SECONDS", 3600),
            history_retention_days=env_int("IDFLOW_HISTORY_RETENTION_DAYS", 30),
            codec_host=os.environ.get("IDFLOW_CODEC_HOST", "127.0.0.1"),
            codec_port=env_int("IDFLOW_CODEC_PORT", ui + 1),
            codec_allowed_origins=tuple(
                origin.strip().rstrip("/") for origin in origins.split(",") if origin.strip()
            )
            if origins
            else (f"http://localhost:{ui}", f"http://127.0.0.1:{ui}"),
            codec_same_user=os.environ.get("IDFLOW_CODEC_SAME_USER", "0") == "1",
        )
