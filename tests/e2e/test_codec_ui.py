"""The Temporal Web UI shows what the proxy offloaded, through the proxy's codec server, in a
real browser (headless Chromium).

One dev server with its Web UI calls the codec of a proxy (bearer tokens, one allowed origin,
a decode limit). A workflow run through that proxy has a JSON input and a larger JSON result,
both offloaded: the input is under the decode limit, so the page must show its value; the
result is over it, so the page shows the reference with a Download button that must give back
the original. The dev UI never sends a token of its own (docs/codec-server.md §4), so the
browser adds the Authorization header to every request through CDP, as a login proxy would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DataConverter

from browser import Browser
from claims import event_name, is_reference, iter_payloads
from harness import Codec, DevServer, Proxy, connect, free_port, unique, worker
from stores import FileStore
from workflows import JsonOrder

# Small enough that the input, offloaded, fits its code block whole: CodeMirror renders only the
# lines in view, and the test reads the value off the page.
THRESHOLD = 256
DECODE_MAX = 64 * 1024
TOKEN = secrets.token_urlsafe(16)

# Selectors. The input/result section has a test id; its code blocks are labelled (aria-label)
# with their heading; the header's codec status icon has a test id per state
# (data-encoder-status.svelte). Test ids and accessible labels are what the UI's own tests select
# on, unlike its Tailwind class names.
SECTION_ID = "input-and-result"
SECTION = f'[data-testid="{SECTION_ID}"]'
CODEC_OK = '[data-testid="data-encoder-status-success"]'
CODEC_ERROR = '[data-testid="data-encoder-status-error"]'
CODEC_ERROR_BANNER = "Codec Server could not connect"


def code_block(name: str) -> str:
    return f'{SECTION} [role="textbox"][aria-label="{name}"]'


def format_bytes(size: int) -> str:
    """The UI's formatBytes (src/lib/utilities/format-bytes.ts): powers of 1024, at most two
    decimals, trailing zeros dropped."""
    units = ["Bytes", "KB", "MB", "GB"]
    exponent = 0
    while size >= 1024 ** (exponent + 1) and exponent < len(units) - 1:
        exponent += 1
    return f"{float(f'{size / 1024**exponent:.2f}'):g} {units[exponent]}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_sha256(value) -> str:
    return sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def sdk_payload(value) -> Payload:
    """The payload the worker sent for `value`: the SDK's default JSON encoding."""
    return DataConverter.default.payload_converter.to_payloads([value])[0]


@dataclass
class UiRun:
    server: DevServer
    codec: Codec
    proxy: Proxy
    workflow_id: str
    run_id: str
    order: dict
    result: dict
    result_size: int  # bytes of the offloaded result, as its reference says

    @property
    def page(self) -> str:
        workflow = f"namespaces/default/workflows/{self.workflow_id}/{self.run_id}"
        return f"{self.server.ui_url}/{workflow}/history"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("codec-ui")


@pytest.fixture(scope="module")
def ui_stack(workdir: Path) -> Iterator[tuple[DevServer, Codec, Proxy]]:
    """The codec's port is chosen first: the UI is told its endpoint at start, and the codec then
    allows the UI's origin."""
    codec_port = free_port()
    server = DevServer.start(workdir, ui=True, ui_codec_endpoint=f"http://127.0.0.1:{codec_port}")
    try:
        codec = Codec(
            port=codec_port,
            allow_origins=[server.ui_url],
            tokens={"ui-test": TOKEN},
            decode_max_bytes=DECODE_MAX,
        )
        store = FileStore(workdir / "store")
        proxy = Proxy.start(server.address, store, workdir / "proxy.log", THRESHOLD, codec=codec)
        try:
            yield server, codec, proxy
        finally:
            proxy.process.stop()
    finally:
        server.process.stop()


async def offloaded_sizes(client: Client, workflow_id: str) -> dict[str, int]:
    """Event type -> size of the reference it holds, in the history as the server stores it."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return {
        event_name(event): payload.external_payloads[0].size_bytes
        for event in history.events
        for _, payload in iter_payloads(event)
        if is_reference(payload)
    }


@pytest.fixture(scope="module")
async def ui_run(ui_stack: tuple[DevServer, Codec, Proxy]) -> UiRun:
    server, codec, proxy = ui_stack
    workflow_id = unique("codec-ui")
    order = {"id": workflow_id, "line": "claimcheck codec " * 20, "copies": 1000}
    client = await connect(proxy.address)
    async with worker(client, workflow_id):
        handle = await client.start_workflow(
            JsonOrder.run, order, id=workflow_id, task_queue=workflow_id
        )
        result = await handle.result()
    sizes = await offloaded_sizes(await connect(server.address), workflow_id)
    # Both offloaded (or the page would show them without any codec), on either side of the limit.
    input_size = sizes.get("WORKFLOW_EXECUTION_STARTED", 0)
    result_size = sizes.get("WORKFLOW_EXECUTION_COMPLETED", 0)
    assert THRESHOLD <= input_size <= DECODE_MAX < result_size, sizes
    run_id = handle.result_run_id
    return UiRun(server, codec, proxy, workflow_id, run_id, order, result, result_size)


@pytest.fixture(scope="module")
def browser(workdir: Path) -> Iterator[Browser]:
    browser = Browser.start(workdir / "browser")
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(autouse=True)
def codec_logs(logs: dict[str, Path], workdir: Path) -> None:
    logs["claimcheck proxy with codec"] = workdir / "proxy.log"
    logs["temporal dev server with UI"] = workdir / "temporal-server.log"


def text_of(browser: Browser, css: str) -> str | None:
    """All of an element's text, also what its scroll box hides (Selenium's .text leaves it out)."""
    elements = browser.driver.find_elements(By.CSS_SELECTOR, css)
    return elements[0].get_attribute("textContent") if elements else None


def json_in(browser: Browser, name: str):
    """The value shown in the Input or Result code block, or None while it is not JSON."""
    text = text_of(browser, code_block(name))
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def open_with_token(browser: Browser, run: UiRun, token: str) -> None:
    browser.set_headers({"Authorization": f"Bearer {token}"})
    browser.open(run.page)


def decode_statuses(browser: Browser) -> list[int]:
    return [r.status for r in browser.responses("/decode") if r.type == "Fetch"]


def test_decoded_value_on_the_workflow_page(browser: Browser, ui_run: UiRun, workdir: Path):
    open_with_token(browser, ui_run, TOKEN)
    browser.wait("the decoded input", lambda: json_in(browser, "Input") == ui_run.order)
    # The result is over the decode limit: still the reference (claim data, no value).
    reference = browser.wait("the result's reference", lambda: json_in(browser, "Result"))
    assert "claimData" in reference and "lines" not in reference, reference
    browser.wait(
        "the codec's success icon in the header",
        lambda: browser.driver.find_elements(By.CSS_SELECTOR, CODEC_OK),
    )
    assert not browser.driver.find_elements(By.CSS_SELECTOR, CODEC_ERROR)
    statuses = decode_statuses(browser)
    assert statuses and all(status == 200 for status in statuses), statuses
    shot = browser.screenshot(workdir / "decoded-page.png")
    print(f"screenshot of the decoded page: {shot}")


def test_download_of_a_payload_over_the_decode_limit(browser: Browser, ui_run: UiRun):
    open_with_token(browser, ui_run, TOKEN)
    label = format_bytes(ui_run.result_size)
    button = browser.wait(
        f"the result's Download button labelled {label!r}",
        lambda: browser.driver.find_elements(
            By.XPATH, f'//*[@data-testid="{SECTION_ID}"]//button[normalize-space(.)="{label}"]'
        ),
    )[0]
    browser.clear_downloads()
    button.click()
    saved = browser.wait_for_download()

    # The UI saves the value re-serialised (docs/codec-server.md §5): compare it as JSON.
    assert canonical_sha256(json.loads(saved.read_bytes())) == canonical_sha256(ui_run.result)
    # And byte for byte, what the codec's /download answered is the payload the worker sent.
    (answer,) = [r for r in browser.responses("/download") if r.type == "Fetch"]
    assert answer.status == 200
    (payload,) = json.loads(browser.response_body(answer))["payloads"]
    original = sdk_payload(ui_run.result)
    assert sha256(base64.b64decode(payload["data"])) == sha256(original.data)


def test_wrong_token_shows_decoding_failed(browser: Browser, ui_run: UiRun):
    open_with_token(browser, ui_run, "not-" + TOKEN)
    browser.wait(
        "the codec error in the header",
        lambda: browser.driver.find_elements(By.CSS_SELECTOR, CODEC_ERROR),
    )
    assert CODEC_ERROR_BANNER in browser.driver.find_element(By.TAG_NAME, "body").text
    statuses = decode_statuses(browser)
    assert statuses and all(status == 401 for status in statuses), statuses
    # Shown undecoded: the input's reference, not its value. (A reference gets the Download
    # button rather than the "Data decoding failed" line that other payloads get.)
    shown = browser.wait("the input's reference", lambda: json_in(browser, "Input"))
    assert "claimData" in shown and shown != ui_run.order, shown


def preflight(codec: Codec, origin: str) -> dict[str, str]:
    request = urllib.request.Request(
        f"{codec.url}/decode",
        method="OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as refused:
        return {k.lower(): v for k, v in refused.headers.items()}


def test_preflight_from_another_origin_gets_no_grant(browser: Browser, ui_run: UiRun):
    allowed = preflight(ui_run.codec, ui_run.server.ui_url)
    assert allowed.get("access-control-allow-origin") == ui_run.server.ui_url, allowed
    for origin in ("http://127.0.0.1:1", "http://attacker.example", "null"):
        refused = preflight(ui_run.codec, origin)
        assert "access-control-allow-origin" not in refused, (origin, refused)

    # The browser's view: the same UI under another origin (localhost, not 127.0.0.1) may not
    # call the codec, so the page shows the codec error and no /decode answer ever arrives.
    browser.set_headers({"Authorization": f"Bearer {TOKEN}"})
    browser.open(ui_run.page.replace("127.0.0.1", "localhost", 1))
    browser.wait(
        "the codec error in the header",
        lambda: browser.driver.find_elements(By.CSS_SELECTOR, CODEC_ERROR),
    )
    assert not decode_statuses(browser)
    failures = browser.failed_requests("/decode")
    assert failures, "the page never called the codec"
    assert {why for _, why in failures} == {"PreflightMissingAllowOriginHeader"}, failures
