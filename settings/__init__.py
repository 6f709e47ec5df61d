"""Configuration for every idflow process, read from the environment.

All paths default to one data directory (``IDFLOW_HOME``, default ``.idflow``
in the project checkout) so that a fresh clone runs with no configuration.
Each setting can be overridden by its own ``IDFLOW_*`` variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def _env_secret(name: str) -> str:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (e.g. a mounted secret)."""
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return ""
    try:
        return Path(path).expanduser().read_text().strip()
    except OSError as error:
        raise ValueError(f"{name}_FILE: cannot read {path}: {error.strerror}") from None


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None


@dataclass(frozen=True)
class Settings:
    home: Path
    model_cache: Path
    blob_dir: Path
    database_url: str
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    # A secured cluster (Temporal Cloud, self-hosted with TLS): see starter/connection.py.
    temporal_tls: bool = False
    # PEM file paths; "" for none (the empty string survives a trip through the environment)
    temporal_tls_ca: str = ""
    temporal_tls_cert: str = ""
    temporal_tls_key: str = ""
    temporal_tls_server_name: str = ""
    temporal_api_key: str = field(default="", repr=False)
    cpu_task_queue: str = "idflow-cpu"
    gpu_task_queue: str = "idflow-gpu"
    cpu_concurrency: int = 4
    gpu_concurrency: int = 16
    batch_max_size: int = 16
    batch_max_wait_ms: float = 5.0
    review_deadline_seconds: int = 72 * 3600
    issuer_id: str = "https://issuer.idflow.invalid"
    # Prometheus /metrics, /healthz and /readyz of each pool (0: off); see workers/telemetry.py.
    cpu_metrics_port: int = 9464
    gpu_metrics_port: int = 9465
    metrics_host: str = ""  # bind address; "" is every interface

    @property
    def dev_server_db(self) -> Path:
        return self.home / "temporal.db"

    def to_env(self) -> dict[str, str]:
        """The ``IDFLOW_*`` variables that make ``from_env()`` return these settings (for
        child processes)."""
        return {
            f"IDFLOW_{field.name.upper()}": str(getattr(self, field.name)) for field in fields(self)
        }

    @classmethod
    def from_env(cls) -> Settings:
        home = _env_path("IDFLOW_HOME", PROJECT_ROOT / ".idflow")
        return cls(
            home=home,
            model_cache=_env_path("IDFLOW_MODEL_CACHE", home / "models"),
            blob_dir=_env_path("IDFLOW_BLOB_DIR", home / "blobs"),
            database_url=os.environ.get("IDFLOW_DATABASE_URL") or f"sqlite:///{home / 'idflow.db'}",
            temporal_address=os.environ.get("IDFLOW_TEMPORAL_ADDRESS", "localhost:7233"),
            temporal_namespace=os.environ.get("IDFLOW_TEMPORAL_NAMESPACE", "default"),
            temporal_ui_port=env_int("IDFLOW_TEMPORAL_UI_PORT", 8233),
            temporal_tls=_env_bool("IDFLOW_TEMPORAL_TLS", False),
            temporal_tls_ca=os.environ.get("IDFLOW_TEMPORAL_TLS_CA", ""),
            temporal_tls_cert=os.environ.get("IDFLOW_TEMPORAL_TLS_CERT", ""),
            temporal_tls_key=os.environ.get("IDFLOW_TEMPORAL_TLS_KEY", ""),
            temporal_tls_server_name=os.environ.get("IDFLOW_TEMPORAL_TLS_SERVER_NAME", ""),
            temporal_api_key=_env_secret("IDFLOW_TEMPORAL_API_KEY"),
            cpu_task_queue=os.environ.get("IDFLOW_CPU_TASK_QUEUE", "idflow-cpu"),
            gpu_task_queue=os.environ.get("IDFLOW_GPU_TASK_QUEUE", "idflow-gpu"),
            cpu_concurrency=env_int("IDFLOW_CPU_CONCURRENCY", 4),
            gpu_concurrency=env_int("IDFLOW_GPU_CONCURRENCY", 16),
            batch_max_size=env_int("IDFLOW_BATCH_MAX_SIZE", 16),
            batch_max_wait_ms=_env_float("IDFLOW_BATCH_MAX_WAIT_MS", 5.0),
            review_deadline_seconds=env_int("IDFLOW_REVIEW_DEADLINE_SECONDS", 72 * 3600),
            issuer_id=os.environ.get("IDFLOW_ISSUER_ID", "https://issuer.idflow.invalid"),
            cpu_metrics_port=env_int("IDFLOW_CPU_METRICS_PORT", 9464),
            gpu_metrics_port=env_int("IDFLOW_GPU_METRICS_PORT", 9465),
            metrics_host=os.environ.get("IDFLOW_METRICS_HOST", ""),
        )
