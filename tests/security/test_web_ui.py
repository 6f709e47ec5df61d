"""Browser check: the dev server's Web UI shows a verification decoded by the codec server.

A dev server with its Web UI (``--ui-codec-endpoint`` pointing at the codec
server, as ``idflow dev`` configures it), both worker pools and a real
verification; headless Chromium opens the verification's page and must show
the decoded input and result, which the server itself holds only as
ciphertext. The screenshot is saved as ``artifacts/ui-decoded.png``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.samples import sample_pairs
from devstack.scratch import dev_server
from security.codec_server import start_codec_server
from security.config import SecurityConfig
from security.staff_tokens import ensure_dev_tokens
from settings import PROJECT_ROOT
from workflows.identity_verification import workflow_id

from ..support.browser import INSTALL_HINT, Chromium, chromium_path
from ..support.temporal import IdflowStack, LoopThread, stack_settings, start_stack

pytestmark = [
    pytest.mark.temporal,
    pytest.mark.slow,
    pytest.mark.skipif(chromium_path() is None, reason=INSTALL_HINT),
]

SCREENSHOT = PROJECT_ROOT / "artifacts" / "ui-decoded.png"
SUBJECT = "opaque-subject-ui-check"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ui_stack(
    model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[IdflowStack, str]]:
    """A dev server with the Web UI and the codec server, and both pools: (stack, UI URL)."""
    ui_port = _free_port()
    settings = stack_settings(
        tmp_path_factory.mktemp("idflow-ui"), "unset", model_cache, temporal_ui_port=ui_port
    )
    ui = f"http://127.0.0.1:{ui_port}"
    config = SecurityConfig(
        codec_port=0,
        codec_allowed_origins=(ui, f"http://localhost:{ui_port}"),
        codec_same_user=True,  # the browser runs as this OS user and sends no token
    )
    ensure_dev_tokens(settings)
    loop = LoopThread()
    runner, codec_url = loop.run(start_codec_server(settings, config))
    server = dev_server(
        tmp_path_factory.mktemp("temporal-ui"),
        loop,
        ui_port=ui_port,
        codec_endpoint=codec_url,
    )
    stack = start_stack(server, dataclasses.replace(settings, temporal_address=server.target))
    try:
        yield stack, ui
    finally:
        stack.stop()
        server.stop()
        loop.run(runner.cleanup())
        loop.close()


def test_web_ui_shows_the_decoded_input_and_result(
    ui_stack: tuple[IdflowStack, str], photo_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "idflow.codec_server")
    stack, ui = ui_stack
    pair = sample_pairs(photo_dir)["same person"]

    async def verify() -> str:
        draft = await stack.client.create(pair.selfie, pair.document, subject_ref=SUBJECT)
        await stack.client.start(draft)
        await stack.client.result(draft.verification_id)
        return draft.verification_id

    verification_id = stack.run(verify())

    async def look() -> tuple[str, bytes]:
        async with (
            Chromium.launch(stack.settings.home / "chromium-profile") as browser,
            browser.new_page() as page,
        ):
            await page.navigate(f"{ui}/namespaces/default/workflows/{workflow_id(verification_id)}")
            # The decoded input (references and settings: nothing personal is in it).
            text = await page.wait_for_text('"processing_attempts"', timeout_s=90)
            text = await page.wait_for_text('"approved"', timeout_s=30)  # the decoded result
            return text, await page.screenshot()

    text, png = asyncio.run(look())
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(png)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert '"face_match"' in text and "binary/encrypted" not in text
    assert SUBJECT not in text  # the subject reference stays in the database
    # The UI's requests went through the codec server, as this OS user's.
    assert f"for staff os-user-{os.getuid()}" in caplog.text
