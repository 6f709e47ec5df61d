"""``create()`` at the door: the hostile corpus, verification-id reuse, a free event loop.

Runs the real client library against a real SQLite database and encrypted
blob store; no Temporal server is needed because ``create`` never talks to it
(``start`` does; tests/security/test_stack_privacy.py runs a subset of the
corpus through the real stack).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from temporalio.exceptions import ApplicationError

from activities.quality import QualityActivities
from domain.contracts import QualityCheckInput
from domain.reasons import ReasonCode
from imaging.decode import decode_image
from imaging.limits import MiB
from starter.client import Draft, VerificationClient, VerificationIdInUse
from store import drafts, verifications
from store.blobs import open_blob_store
from store.credentials import consume_nonce
from store.engine import get_engine

from ..support.hostile_images import HostileImage, scan_bomb
from ..support.temporal import stack_settings

CALLER_EXTRA_RSS = 300 * MiB


@pytest.fixture
def client(tmp_path: Path) -> VerificationClient:
    settings = stack_settings(tmp_path, "127.0.0.1:1", tmp_path / "models")
    engine = get_engine(settings.database_url)
    return VerificationClient(None, settings, engine, open_blob_store(settings))  # type: ignore[arg-type]


def create(client: VerificationClient, *args: object, **kwargs: object) -> Draft:
    return asyncio.run(client.create(*args, **kwargs))  # type: ignore[arg-type]


def stored_files(client: VerificationClient, verification_id: str) -> list[str]:
    folder = client.settings.blob_dir / verification_id
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def test_every_hostile_image_ends_in_its_refusal_or_a_clean_stored_decode(
    client: VerificationClient,
    hostile_image_corpus: list[HostileImage],
    photo: Callable[[str], bytes],
) -> None:
    """The whole corpus through ``create()``: refused images are not stored, others are clean.

    The decoding process's CPU and memory are measured per image in
    test_bounded_decoding.py; here the caller's own peak memory is measured
    (resident peak reset before each create).
    """
    document = photo("obama.jpg")
    outcomes: dict[str, ReasonCode | None] = {}
    for number, item in enumerate(hostile_image_corpus):
        verification_id = f"hostile-{number}"
        baseline = _status_bytes("VmRSS:")
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        draft = create(client, item.data, document, "opaque-fuzz", verification_id)
        extra = _status_bytes("VmHWM:") - baseline
        assert extra <= CALLER_EXTRA_RSS, f"{item.name}: +{extra / MiB:.0f} MiB in the caller"
        if draft.refused:
            assert set(draft.refused) == {"selfie"}, item.name
            assert draft.selfie is None and draft.document is None
            assert stored_files(client, verification_id) == [], f"{item.name} was stored"
            outcomes[item.name] = draft.refused["selfie"]
        else:
            assert draft.selfie is not None and draft.document is not None
            stored = client.blobs.get(verification_id, draft.selfie)
            assert draft.selfie.media_type in ("image/jpeg", "image/png")
            assert decode_image(stored).ndim == 3  # what is stored is our own clean encoding
            outcomes[item.name] = None
    assert outcomes == {item.name: item.expected for item in hostile_image_corpus}


def test_an_existing_id_is_refused_before_anything_is_stored(
    client: VerificationClient, photo: Callable[[str], bytes]
) -> None:
    """Finding 5: a second request under an existing id stored new images and subject."""
    selfie, document = photo("obama.jpg"), photo("obama2.jpg")
    first = create(client, selfie, document, "subject-1", "v-reused")
    files = stored_files(client, "v-reused")
    row = verifications.get(client.engine, "v-reused")
    assert len(files) == 2 and row is not None

    other_image = photo("biden.jpg")
    for attempt in (
        (other_image, document, "subject-1"),  # another selfie
        (selfie, other_image, "subject-1"),  # another document
        (selfie, document, "subject-2"),  # another subject
        (b"not an image", document, "subject-1"),  # even a refused one
    ):
        with pytest.raises(VerificationIdInUse, match="nothing was stored"):
            create(client, *attempt, "v-reused")
    assert stored_files(client, "v-reused") == files
    again = verifications.get(client.engine, "v-reused")
    assert again is not None and again.subject_ref == "subject-1"
    assert drafts.get(client.engine, "v-reused").request_digest == drafts.request_digest(  # type: ignore[union-attr]
        selfie, document, "subject-1"
    )
    assert first.selfie is not None


def test_the_same_request_again_gets_the_same_draft(
    client: VerificationClient, photo: Callable[[str], bytes]
) -> None:
    """Idempotent retry: same image bytes and subject ref -> the draft the first call made."""
    selfie, document = photo("obama.jpg"), photo("obama2.jpg")
    first = create(client, selfie, document, "subject-1", "v-retry")
    files = stored_files(client, "v-retry")
    assert create(client, selfie, document, "subject-1", "v-retry") == first
    assert stored_files(client, "v-retry") == files  # nothing stored twice

    # Also once its nonce was consumed by the device's proof (the verification ran).
    consume_nonce(client.engine, "v-retry", first.nonce, "proof-digest")
    assert create(client, selfie, document, "subject-1", "v-retry") == first
    with pytest.raises(VerificationIdInUse):
        create(client, photo("biden.jpg"), document, "subject-1", "v-retry")
    assert stored_files(client, "v-retry") == files

    refused = create(client, b"", document, "subject-1", "v-refused")
    assert refused.refused == {"selfie": ReasonCode.INPUT_UNREADABLE}
    assert create(client, b"", document, "subject-1", "v-refused") == refused


def test_an_id_used_before_drafts_were_kept_is_refused(
    client: VerificationClient, photo: Callable[[str], bytes]
) -> None:
    verifications.create(client.engine, "v-old", "idv-v-old", "subject-1")
    with pytest.raises(VerificationIdInUse):
        create(client, photo("obama.jpg"), photo("obama2.jpg"), "subject-1", "v-old")
    assert stored_files(client, "v-old") == []


def test_a_create_that_crashed_half_way_is_finished_by_the_same_request(
    client: VerificationClient, photo: Callable[[str], bytes]
) -> None:
    selfie, document = photo("obama.jpg"), photo("obama2.jpg")
    drafts.claim(client.engine, "v-crashed", drafts.request_digest(selfie, document, "s"))
    draft = create(client, selfie, document, "s", "v-crashed")
    assert draft.selfie is not None and len(stored_files(client, "v-crashed")) == 2
    assert drafts.get(client.engine, "v-crashed").complete  # type: ignore[union-attr]


def test_create_does_not_block_the_event_loop(
    client: VerificationClient, photo: Callable[[str], bytes]
) -> None:
    """Decoding, encryption and the database run off the loop: other coroutines keep running."""
    big = io.BytesIO()
    Image.open(io.BytesIO(photo("obama.jpg"))).resize((6000, 7500)).save(big, "JPEG", quality=90)

    async def scenario() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        await client.create(big.getvalue(), photo("obama2.jpg"), "subject", "v-loop")
        during = ticks - before
        done.set()
        await ticking
        return during

    assert asyncio.run(scenario()) >= 3


def test_the_quality_check_decodes_with_the_same_bounded_decoder(
    client: VerificationClient,
) -> None:
    """A raw hostile blob (stored before this change, or by another writer) is refused by the
    quality check on its first attempt, from its structure, without decoding it."""
    bomb = client.blobs.put("v-raw", scan_bomb(6000, 1000), "application/octet-stream")
    quality = QualityActivities(server=None, blobs=client.blobs, concurrency=1)  # type: ignore[arg-type]
    with pytest.raises(ApplicationError) as refused:
        quality.check_quality(QualityCheckInput("v-raw", bomb, bomb, models={}))
    quality.close()
    assert refused.value.type == "INPUT_TOO_LARGE" and refused.value.non_retryable
