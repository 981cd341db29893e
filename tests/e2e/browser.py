"""A real browser for the end-to-end tests: Debian's headless Chromium under Debian's chromedriver,
driven by Selenium, that can reach nothing but loopback.

Selenium is given both binaries, so its Selenium Manager never runs (it would download a
browser and a driver and send usage statistics); SE_OFFLINE makes sure of it. The binary is the
real one, not Debian's /usr/bin/chromium wrapper, which adds Google API keys and remote
extensions.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/lib/chromium/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1600, 1200)

# Every switch that keeps Chromium from calling home: no sync, component or safe-browsing
# updates, metrics, field trials, DNS prefetch or pings. Names other than localhost resolve to
# nothing, and any other address goes to a proxy on a closed loopback port (loopback itself
# bypasses proxies), so not even a literal IP leaves the machine.
QUIET_FLAGS = [
    "--headless=new",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-field-trial-config",
    "--disable-features=OptimizationHints,Translate,MediaRouter,DialMediaRouteProvider,"
    "NetworkTimeServiceQuerying,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater",
    "--dns-prefetch-disable",
    "--no-pings",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--safebrowsing-disable-auto-update",
    "--password-store=basic",
    "--use-mock-keychain",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--proxy-server=127.0.0.1:9",
]

T = TypeVar("T")


@dataclass
class Response:
    """A response the page received, as the browser's Network domain reported it."""

    request_id: str
    url: str
    type: str  # Fetch, Preflight, Document, Script, ...
    status: int


@dataclass
class Browser:
    driver: WebDriver
    downloads: Path
    _network_events: list[dict] = field(default_factory=list)

    @classmethod
    def start(cls, workdir: Path) -> Browser:
        """A fresh profile and download directory under `workdir`, and chromedriver's log there."""
        for binary in (CHROMIUM, CHROMEDRIVER):
            if not binary.is_file():
                raise FileNotFoundError(
                    f"{binary} is missing: run tests/env/debian.sh as root"
                    " (it installs chromium and chromium-driver)"
                )
        os.environ["SE_OFFLINE"] = "true"
        os.environ["SE_AVOID_STATS"] = "true"
        downloads = workdir / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in QUIET_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={workdir / 'profile'}")
        options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
        if os.geteuid() == 0:
            options.add_argument("--no-sandbox")  # Chromium refuses to run as root with it
        # The Network domain's events, to read what the codec server answered.
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        service = Service(
            executable_path=str(CHROMEDRIVER),
            service_args=["--log-level=WARNING"],
            log_output=str(workdir / "chromedriver.log"),
        )
        driver = webdriver.Chrome(options=options, service=service)
        browser = cls(driver, downloads)
        try:
            browser.cdp("Network.enable", {})
            browser.cdp(
                "Browser.setDownloadBehavior",
                {"behavior": "allow", "downloadPath": str(downloads)},
            )
        except BaseException:
            driver.quit()
            raise
        return browser

    def quit(self) -> None:
        self.driver.quit()

    def cdp(self, method: str, params: dict) -> dict:
        return self.driver.execute_cdp_cmd(method, params)

    def set_headers(self, headers: dict[str, str]) -> None:
        """Headers added to every request the page makes from now on (cross-origin too)."""
        self.cdp("Network.setExtraHTTPHeaders", {"headers": headers})

    def open(self, url: str) -> None:
        """Loads `url`, forgetting the responses of earlier pages."""
        self._read_network_events()
        self._network_events.clear()
        self.driver.get(url)

    def _read_network_events(self) -> None:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"].startswith("Network."):
                self._network_events.append(message)

    def responses(self, url_contains: str) -> list[Response]:
        """The responses received so far whose URL contains `url_contains` (preflights included)."""
        self._read_network_events()
        return [
            Response(
                params["requestId"],
                params["response"]["url"],
                params["type"],
                params["response"]["status"],
            )
            for event in self._network_events
            if event["method"] == "Network.responseReceived"
            and url_contains in (params := event["params"])["response"]["url"]
        ]

    def failed_requests(self, url_contains: str) -> list[tuple[str, str]]:
        """(URL, why) of each request to a matching URL that got no response: the CORS error
        (e.g. PreflightMissingAllowOriginHeader) if the browser refused it, else the net error."""
        self._read_network_events()
        urls = {
            e["params"]["requestId"]: e["params"]["request"]["url"]
            for e in self._network_events
            if e["method"] == "Network.requestWillBeSent"
        }
        return [
            (url, p.get("corsErrorStatus", {}).get("corsError") or p["errorText"])
            for e in self._network_events
            if e["method"] == "Network.loadingFailed"
            and url_contains in (url := urls.get((p := e["params"])["requestId"], ""))
        ]

    def response_body(self, response: Response) -> bytes:
        body = self.cdp("Network.getResponseBody", {"requestId": response.request_id})
        if body["base64Encoded"]:
            return base64.b64decode(body["body"])
        return body["body"].encode()

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float = 15) -> T:
        """Polls `probe()` until it returns something; fails naming `what`, with a screenshot of
        the page next to the downloads."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = probe()
            except WebDriverException:
                value = None  # the page is re-rendering; ask again
            if value:
                return value
            if time.monotonic() > deadline:
                shot = self.screenshot(self.downloads.parent / "timeout.png")
                raise TimeoutError(
                    f"{what}: not there after {timeout}s on {self.driver.current_url}"
                    f" (screenshot {shot})"
                )
            time.sleep(0.2)

    def wait_for_download(self, timeout: float = 15) -> Path:
        """The one file downloaded into the (emptied) download directory, once complete."""

        def done() -> Path | None:
            # Chromium writes NAME.crdownload and renames it once complete.
            files = list(self.downloads.iterdir())
            if len(files) == 1 and files[0].suffix != ".crdownload":
                return files[0]
            return None

        return self.wait("a downloaded file", done, timeout)

    def clear_downloads(self) -> None:
        shutil.rmtree(self.downloads)
        self.downloads.mkdir()

    def screenshot(self, path: Path) -> Path:
        """The whole page, not just the window."""
        height = int(self.cdp("Page.getLayoutMetrics", {})["cssContentSize"]["height"])
        clip = {"x": 0, "y": 0, "width": WINDOW[0], "height": max(height, 600), "scale": 1}
        shot = self.cdp(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
