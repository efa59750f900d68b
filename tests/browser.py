"""A real headless browser for the tests: Chromium driven by Playwright.

The Chromium is Debian's (`.ci/run` installs the `chromium` package) or any `chromium`,
`chromium-browser` or `google-chrome` on PATH; without one the test is skipped and says why.
WebGL runs on SwiftShader, Chromium's CPU renderer. The page gets no network: every request
that is not for the page itself or a data: URL is recorded and aborted."""

import io
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


class Visit(NamedTuple):
  errors: list[str]  # uncaught exceptions and console errors
  requests: list[str]  # requests that would have left the machine
  screenshot: np.ndarray  # RGB in [0, 1]


def chromium() -> str:
  for name in BROWSERS:
    if path := shutil.which(name):
      return path
  pytest.skip(
    f"no headless browser: none of {', '.join(BROWSERS)} is on PATH (.ci/run "
    "installs Debian's chromium)"
  )


def visit(
  page_file: Path, ready: str, width: int = 640, height: int = 480, timeout_ms: int = 30_000
) -> Visit:
  """Opens `page_file`, waits until the JavaScript expression `ready` is true (and one
  second more for the first frames), and takes a screenshot. A `ready` that stays false
  is recorded as an error, beside the script errors that explain it."""
  import matplotlib.image
  from playwright.sync_api import TimeoutError as PlaywrightTimeout
  from playwright.sync_api import sync_playwright

  errors, requests = [], []
  with sync_playwright() as p:
    browser = p.chromium.launch(
      executable_path=chromium(),
      args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
    )
    try:
      page = browser.new_page(viewport={"width": width, "height": height})
      page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
      page.on(
        "console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None
      )

      def route(r):
        if r.request.url.startswith(("data:", "file:")):
          return r.continue_()
        requests.append(r.request.url)
        return r.abort()

      page.route("**/*", route)
      page.goto(Path(page_file).resolve().as_uri())
      try:
        page.wait_for_function(ready, timeout=timeout_ms)
      except PlaywrightTimeout:
        errors.append(f"timeout: {ready!r} still false after {timeout_ms} ms")
      page.wait_for_timeout(1000)
      png = page.screenshot()
    finally:
      browser.close()
  return Visit(errors, requests, matplotlib.image.imread(io.BytesIO(png))[..., :3])
