"""Logging policy: what idflow processes write to logs never holds personal data.

idflow's own messages name ids, stages, reason codes, sizes and formats only.
This filter is the net under that rule for messages and tracebacks from
libraries, which may quote their input: before a record is written it
redacts

- the values of claim elements (``family_name``, ``birth_date``, ...) and of
  ``claims``/``subject_ref``/``proof_jwt``/``public_jwk`` in reprs and JSON,
  also spelled camelCase (``familyName``) or in another case;
- bytes literals longer than 16 bytes and base64 runs of 64+ characters
  (image bytes, payloads, credentials), also wrapped over lines (MIME, PEM,
  ``\n`` escapes inside JSON);
- runs of 16+ numbers: lists, tuples, numpy reprs (``array([...], dtype=...)``)
  and numpy ``str()`` (space-separated, over lines) — embeddings, landmarks;
  and any bracketed numbers with numpy's ``...`` elision (a summarised array
  of over 1000 values still shows its first and last ones);
- bearer tokens, and tokens in URL paths (``/t/<token>``) or ``token=`` parameters.

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


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_KEY_NAMES = sorted({*PERSONAL_KEYS, *map(_camel, PERSONAL_KEYS)}, key=len, reverse=True)
_KEYED = re.compile(
    rf"(?P<key>['\"]?\b(?:{'|'.join(map(re.escape, _KEY_NAMES))})\b['\"]?\s*[:=]\s*){_VALUE}",
    re.IGNORECASE,
)
_BYTES = re.compile(r"\bb(?:'(?:[^'\\]|\\.){16,}'|\"(?:[^\"\\]|\\.){16,}\")")
# Base64 of 64+ characters, also wrapped: chunks of 16+ joined by line breaks,
# spaces or the two characters of a JSON-escaped newline.
_B64_CHUNK = r"[A-Za-z0-9+/_-]{16,}={0,2}"
_BASE64 = re.compile(rf"{_B64_CHUNK}(?:(?:\s|\\[nr])+{_B64_CHUNK})*")
_NUMBER = r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
# 16+ numbers in a row, separated by commas, spaces, line breaks or brackets:
# Python lists and tuples, numpy's repr and its str().
_NUMBERS = re.compile(
    rf"(?:array\()?(?:[\[(]+\s*)?(?:{_NUMBER}[\s,\[\]()]+){{15,}}{_NUMBER}(?:\s*[\])])*"
)
# Bracketed numbers around numpy's "..." (after _NUMBERS, so every run left is short).
_ELIDED = re.compile(
    rf"(?:array\()?[\[(]+\s*(?:(?:{_NUMBER}|\.\.\.)[\s,\[\]()]+)*\.\.\."
    rf"(?:[\s,\[\]()]+(?:{_NUMBER}|\.\.\.|\[redacted \d+ numbers\]))*\s*[\])]*"
)
_NUMPY_TAIL = re.compile(
    r"(\[redacted (?:\d+ numbers|summarised array)\])"
    r"(?:,\s*shape=\([\d, ]*\))?(?:,\s*dtype=\w+)?\)?"
)
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+")
_URL_TOKEN = re.compile(r"(?i)(/t/|[?&;](?:access_)?token=)[A-Za-z0-9._~+%=-]{8,}")


def _base64(match: re.Match[str]) -> str:
    chars = sum(len(chunk) for chunk in re.findall(r"[A-Za-z0-9+/=_-]+", match.group(0)))
    return f"[redacted {chars} base64 chars]" if chars >= 64 else match.group(0)


def _numbers(match: re.Match[str]) -> str:
    return f"[redacted {len(re.findall(_NUMBER, match.group(0)))} numbers]"


def _elided(match: re.Match[str]) -> str:
    return "[redacted summarised array]"


def redact(text: str) -> str:
    text = _BEARER.sub("Bearer [redacted]", text)
    text = _URL_TOKEN.sub(lambda m: f"{m.group(1)}[redacted]", text)
    text = _KEYED.sub(lambda m: f"{m.group('key')}[redacted]", text)
    text = _BYTES.sub(lambda m: f"b'[redacted {len(m.group(0))} chars]'", text)
    text = _ELIDED.sub(_elided, _NUMBERS.sub(_numbers, text))
    text = _NUMPY_TAIL.sub(r"\1", text)
    return _BASE64.sub(_base64, text)


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
