"""The live dashboard in headless Chromium: engines table, task stream bars while a map runs, the
token, and ``/metrics`` read back as Prometheus text.  A screenshot goes under ``artifacts/``."""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pxmagic import Cluster

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
N_ENGINES = 2


@pytest.fixture(scope="module")
def rc():
    cluster = Cluster(n=N_ENGINES, dashboard=True)
    client = cluster.start_and_connect_sync()
    client.wait_for_engines(N_ENGINES, timeout=60)
    yield client
    cluster.stop()


def stream_length(page) -> int:
    return page.evaluate("() => Bokeh.documents[0].get_model_by_name('task-stream-source').data.engine.length")


@pytest.mark.timeout(180)
def test_the_page_shows_the_engines_and_bars_while_a_map_runs(rc):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "dashboard.png"
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(rc.dashboard_link))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.set_default_timeout(60_000)
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        try:
            page.goto(rc.dashboard_link)
            expect(page.get_by_text("pxmagic cluster", exact=True)).to_be_visible()
            expect(page.get_by_text(f"{N_ENGINES} engines (")).to_be_visible()
            before = stream_length(page)
            lview = rc.load_balanced_view()
            lview.label = "browser test"
            mapped = threading.Thread(target=lview.map_sync, args=(time.sleep, [1.0] * 12), kwargs={"chunksize": 1})
            mapped.start()
            expect(page.get_by_text("busy").first).to_be_visible(timeout=30_000)
            deadline = time.monotonic() + 30
            while stream_length(page) < before + 4 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert stream_length(page) >= before + 4, "no bars reached the task stream"
            expect(page.get_by_text("browser test (").first).to_be_visible()  # a running task in the table
            page.screenshot(path=str(screenshot), full_page=True)
            names = page.evaluate("() => Bokeh.documents[0].get_model_by_name('task-stream-source').data.name")
            assert "browser test" in names
            mapped.join(timeout=60)
        finally:
            if not screenshot.exists() or screenshot.stat().st_mtime < time.time() - 60:
                page.screenshot(path=str(screenshot), full_page=True)
            print(f"\nscreenshot: {screenshot}")
            browser.close()
    outside = [url for url in requested if not url.startswith(origin) and not url.startswith("data:")]
    assert outside == [], f"the page fetched from elsewhere: {outside}"


def test_without_the_token_the_page_and_metrics_are_refused(rc):
    base = rc.dashboard_link.split("?")[0]
    for url in (base, base.replace("/status", "/metrics"), base + "?token=wrong"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=30)
        assert refused.value.code == 403, url


def test_metrics_parse_as_prometheus_text_and_count_the_tasks(rc):
    metrics_url = rc.dashboard_link.replace("/status?", "/metrics?")

    def read() -> dict:
        with urllib.request.urlopen(metrics_url, timeout=30) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    before = read()
    rc[:].apply_sync(abs, -1)
    with pytest.raises(Exception):
        rc[0].apply_sync(lambda: 1 / 0)
    after = read()
    ok, error = ("pxmagic_tasks_total", (("outcome", "ok"),)), ("pxmagic_tasks_total", (("outcome", "error"),))
    assert after[ok] - before[ok] == N_ENGINES and after[error] - before[error] == 1
    assert after[("pxmagic_engines", (("state", "idle"),))] == N_ENGINES
    assert after[("pxmagic_queue_length", ())] == 0
    assert after[("pxmagic_bytes_moved_total", ())] > before[("pxmagic_bytes_moved_total", ())]


def test_the_link_in_a_notebook_and_bad_settings(rc):
    assert rc.dashboard_link.startswith("http://127.0.0.1:") and "token=" in rc.dashboard_link
    assert f'href="{rc.dashboard_link}"' in rc._repr_html_()
    frame = rc.dashboard()
    assert frame.src == rc.dashboard_link and 'iframe' in frame._repr_html_()
    with pytest.raises(ValueError, match="dashboard is True, False or a port number, not 'yes'"):
        Cluster(n=1, dashboard="yes")
