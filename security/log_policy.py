"""Logging policy: what idflow processes write to logs never holds personal data.

idflow's own messages name ids, stages, reason codes, sizes and formats only.
This filter is the net under that rule for messages and tracebacks from
libraries, which may quote their input: before a record is written it
redacts

- the values of claim elements (``family_name``, ``birth_date``, ...) and of
  ``claims``/``subject_ref``/``proof_jwt``/``public_jwk`` in reprs and JSON;
- bytes literals longer than 16 bytes and base64 runs of 64+ characters
  (image bytes, payloads, credentials);
- lists of 16+ numbers (embeddings, landmarks of a face);
- bearer tokens.

``configure_logging`` sets up the root logger with it; worker pools and the
codec server call it at start.
"""

from __future__ import annotations

import logging
import re
import traceback

from domain.claims import OPTIONAL, REQUIRED, SET_BY_ISSUER

PERSONAL_KEYS = (
    *REQUIRED,
    *OPTIONAL,
    *SET_BY_ISSUER,
    "claims",
    "subject_ref",
    "proof_jwt",
    "public_jwk",
    "issuer_signed_b64",
)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_VALUE = rf"(?:{_QUOTED}|\{{[^{{}}]*(?:\{{[^{{}}]*\}}[^{{}}]*)*\}}|\[[^\[\]]*\]|[^,\s}})\]]+)"
_KEYED = re.compile(
    rf"(?P<key>['\"]?\b(?:{'|'.join(map(re.escape, PERSONAL_KEYS))})\b['\"]?\s*[:=]\s*){_VALUE}"
)
_BYTES = re.compile(r"\bb(?:'(?:[^'\\]|\\.){16,}'|\"(?:[^\"\\]|\\.){16,}\")")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{64,}={0,2}")
_NUMBER = r"\s*-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\s*"
_NUMBERS = re.compile(rf"\[(?:{_NUMBER},){{15,}}{_NUMBER}\]|\((?:{_NUMBER},){{15,}}{_NUMBER}\)")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    text = _BEARER.sub("Bearer [redacted]", text)
    text = _KEYED.sub(lambda m: f"{m.group('key')}[redacted]", text)
    text = _BYTES.sub(lambda m: f"b'[redacted {len(m.group(0))} chars]'", text)
    text = _NUMBERS.sub(lambda m: f"[redacted {m.group(0).count(',') + 1} numbers]", text)
    return _BASE64.sub(lambda m: f"[redacted {len(m.group(0))} base64 chars]", text)


class RedactPersonalData(logging.Filter):
    """Replaces a record's message (and traceback) by its redacted rendering."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of ``logger`` (default: root)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactPersonalData) for f in handler.filters):
            handler.addFilter(RedactPersonalData())


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=FORMAT)
    install()
