"""What the dashboard tests share: free ports, the dashboard as a real process, and a real
headless Chromium (Debian's, driven by Playwright)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def artifact(tmp_path: Path, name: str) -> list[Path]:
    """Where to save a test artifact: under the test's tmp path and, when ``STREAMSNN_ARTIFACTS``
    names a folder, there too."""
    paths = [tmp_path / name]
    if os.environ.get("STREAMSNN_ARTIFACTS"):
        folder = Path(os.environ["STREAMSNN_ARTIFACTS"])
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(folder / name)
    return paths


class DashboardProcess:
    """``streamsnn dashboard ADDRESS --port PORT`` as a process; ``url`` once it serves."""

    def __init__(self, address: str, port: int = 0, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamsnn.cli", "dashboard", address, "--port", str(port), *extra],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.url: str | None = None
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(60) or self.url is None:
            self.close()
            raise AssertionError(f"the dashboard did not start: {''.join(self.lines)}")

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if " on http://" in line and self.url is None:
                self.url = line.split(" on ", 1)[1].split()[0]
                self.ready.set()
        self.ready.set()

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> "DashboardProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def poll(check, timeout_s: float, what: str, every_s: float = 0.1):
    """``check()`` until it returns something true (returned), for at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(every_s)


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium (Debian's ``chromium``; ``make test`` installs it) under Playwright."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium on this machine (make browser installs Debian's as root)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, timeout=60_000)
        yield browser
        browser.close()
