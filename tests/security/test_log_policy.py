"""The logging policy redacts personal data and keeps the non-personal facts."""

from __future__ import annotations

import base64
import io
import logging
import os

import pytest

from security.log_policy import RedactPersonalData, install, redact

CLAIMS = {
    "family_name": "Mustermann",
    "given_name": "Erika",
    "birth_date": "1964-08-12",
    "document_number": "UT-9912-4471",
    "driving_privileges": [{"vehicle_category_code": "B"}],
}
SECRETS = ["Mustermann", "Erika", "1964-08-12", "UT-9912-4471", "vehicle_category_code"]


def _logged(message: str, *args: object, exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(f"test-log-policy-{os.urandom(4).hex()}")
    logger.propagate = False
    logger.addHandler(handler)
    install(logger)
    if exc is None:
        logger.warning(message, *args)
    else:
        try:
            raise exc
        except BaseException:
            logger.exception(message, *args)
    return stream.getvalue()


@pytest.mark.parametrize(
    "rendering",
    [
        repr(CLAIMS),
        str(CLAIMS).replace("'", '"'),
        "claims=" + repr(CLAIMS),
        "family_name=Mustermann given_name=Erika",
    ],
)
def test_claim_values_are_redacted_in_reprs_json_and_key_value_text(rendering: str) -> None:
    out = _logged("request for v-123 (INPUT_UNREADABLE): %s", rendering)
    assert "v-123" in out and "INPUT_UNREADABLE" in out
    assert not [secret for secret in SECRETS if secret in out]


def test_bytes_base64_embeddings_and_tokens_are_redacted() -> None:
    image = os.urandom(300)
    embedding = [round(0.001 * i - 0.2, 4) for i in range(512)]
    out = _logged(
        "blob %r b64 %s emb %s auth %s",
        image,
        base64.b64encode(image).decode(),
        embedding,
        "Bearer abcdefghijklmnop0123",
    )
    assert repr(image)[2:40] not in out and base64.b64encode(image).decode()[:40] not in out
    assert "[redacted 512 numbers]" in out and str(embedding[100]) not in out
    assert "abcdefghijklmnop0123" not in out and "Bearer [redacted]" in out
    assert (
        redact("box [1.0, 2.0, 3.0, 4.0] sizes 640x480") == "box [1.0, 2.0, 3.0, 4.0] sizes 640x480"
    )


def test_tracebacks_are_redacted_too() -> None:
    out = _logged("activity failed for %s", "v-9", exc=ValueError(f"bad claims {CLAIMS!r}"))
    assert "Traceback" in out and "ValueError" in out and "v-9" in out
    assert not [secret for secret in SECRETS if secret in out]


def test_install_is_idempotent() -> None:
    logger = logging.getLogger("test-log-policy-idempotent")
    logger.addHandler(logging.NullHandler())
    install(logger)
    install(logger)
    assert sum(isinstance(f, RedactPersonalData) for f in logger.handlers[0].filters) == 1


def test_numpy_reprs_and_strs_are_redacted() -> None:
    np = pytest.importorskip("numpy")
    embedding = np.linspace(-0.2, 0.3, 512).astype("float32")
    landmarks = np.arange(136, dtype="float64").reshape(68, 2) + 0.25
    for rendering in (repr(embedding), str(embedding), repr(landmarks), str(landmarks)):
        out = _logged("face of v-5: %s done", rendering)
        assert "v-5" in out and "done" in out and "redacted" in out
        assert "0.2001" not in out and "67.25" not in out and "dtype" not in out, out


def test_summarised_numpy_arrays_show_none_of_their_values() -> None:
    np = pytest.importorskip("numpy")
    embedding = (np.linspace(-0.2, 0.3, 2048) + 0.0123).astype("float32")
    image = (np.arange(64 * 64 * 3) % 251).astype("uint8").reshape(64, 64, 3)
    for array in (embedding, image):
        for rendering in (repr(array), str(array)):
            assert "..." in rendering  # numpy summarised it: first and last values only
            out = _logged("face of v-6: %s done", rendering)
            assert "v-6" in out and "done" in out and "[redacted summarised array]" in out
            assert "0.1877" not in out and "0.3123" not in out and "dtype" not in out, out
            assert "249" not in out and "250" not in out, out
    assert redact("tried 3 ... 5 times [1, 2]") == "tried 3 ... 5 times [1, 2]"


def test_wrapped_base64_is_redacted() -> None:
    data = base64.b64encode(os.urandom(300)).decode()
    mime = "\n".join(data[at : at + 48] for at in range(0, len(data), 48))
    json_escaped = "\\n".join(data[at : at + 40] for at in range(0, len(data), 40))
    for rendering in (mime, json_escaped, f'{{"jpeg": "{json_escaped}"}}'):
        out = _logged("payload %s", rendering)
        assert not [data[at : at + 16] for at in range(0, 384, 16) if data[at : at + 16] in out]
        assert "base64 chars]" in out


def test_tokens_in_url_paths_and_parameters_are_redacted() -> None:
    token = "kT3v9QyQm7n2bR8sW4xZ0aLp5cD6eF1g"
    for rendering in (f"POST /t/{token}/decode", f"GET /decode?token={token}&x=1"):
        out = _logged("refused %s", rendering)
        assert token not in out and "[redacted]" in out


def test_camel_case_and_other_case_claim_keys_are_redacted() -> None:
    rendering = (
        '{"familyName": "Mustermann", "GivenName": "Erika", "birthDate": "1964-08-12", '
        '"documentNumber": "UT-9912-4471", "subjectRef": "cust-8812", "proofJwt": "eyJ0"}'
    )
    out = _logged("claims %s", rendering)
    assert not [secret for secret in [*SECRETS[:4], "cust-8812", "eyJ0"] if secret in out]
    assert "familyName" in out  # the names stay: they say what was there
