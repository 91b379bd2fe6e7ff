"""The report in a real browser: Debian's Chromium, headless, driven by Playwright.

Playwright's own browsers are never downloaded (no ``playwright install``): the test
launches /usr/bin/chromium, which ``.ci/run`` installs from Debian's packages.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Env
from test_report import JOB, build_demo_job

from searchd.report import write_report
from searchd.report.timeline import append_timeline

CHROMIUM = Path("/usr/bin/chromium")
#: root has no sandbox; the rest keeps Chromium from reaching the network on its own
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="no /usr/bin/chromium (apt-get install -y chromium; .ci/run does)"),
    pytest.mark.timeout(180),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("browser")
    env: Env = build_demo_job(root)
    job_dir = env.state / JOB
    for i in range(30):  # a timeline with a pause, as the daemon will record it
        append_timeline(job_dir, 1_800_000_000 + 10 * i, min(115, 5 * i),
                        "other load 70% > 25%" if 10 <= i < 14 else None)
    out = root / "report.html"
    write_report(env.state, JOB, out)
    yield out
    env.reap()


@pytest.mark.slow  # Chromium's start; .ci/run installs it and runs the extended tier
def test_the_report_renders_offline_in_chromium(report: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    url = report.as_uri()
    requests: list[str] = []
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            args=ARGS, viewport={"width": 1200, "height": 900}, offline=True)
        try:
            ctx.on("request", lambda r: requests.append(r.url))
            page = ctx.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(url, wait_until="load")
            plots = page.query_selector_all("svg.plot")
            assert len(plots) == 9  # the timeline and the 8 of the model types
            for el in plots:
                el.scroll_into_view_if_needed()
                box = el.bounding_box()
                label = el.get_attribute("aria-label")
                assert box is not None and box["width"] > 200 and box["height"] > 100, label
            # the heatmap's pixels (a data: image inside its SVG) are drawn, not blocked
            images = page.query_selector_all("svg.plot image")
            assert images and all((b := i.bounding_box()) and b["width"] > 0 for i in images)
            assert page.title() == f"searchd report: {JOB}"
            assert page.locator(".warn").count() == 1  # svc's C at the edge of its grid
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            print(f"screenshot: {shot}")
        finally:
            ctx.close()
    # CSP violations and failed loads show up as console errors
    assert problems == []
    assert requests and all(u == url or u.startswith("data:") for u in requests), requests
