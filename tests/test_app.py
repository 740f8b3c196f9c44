"""The running app, as its users reach it: gradio_client on the API, a real browser on the page.

The app runs as a subprocess (``python app.py`` on a free port) with the embedded pair, as a user starts it.
The browser test drives Debian's chromium through Playwright; ``.ci/run`` installs it, and with ``CI`` set
a missing browser is a failure, not a skip. Screenshots go to ``test-output/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lvspec.trace import RunTrace, Settings, VideoInfo, load_runs

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "assets" / "videos" / "red-circle-right.mp4"
SHOTS = ROOT / "test-output"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT = 120_000  # ms: a browser action's or assertion's patience on a busy CPU


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    started = time.time()
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() - started > 180:
                proc.kill()
                pytest.fail("the app did not start")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def test_generate_endpoint_returns_a_valid_trace(client):
    from gradio_client import handle_file

    data = client.predict(handle_file(str(CLIP)), "Describe the video.", "lvspec", api_name="/generate")
    trace = RunTrace.from_json(data)
    assert trace.method == "lvspec" and trace.prompt == "Describe the video."
    assert trace.text and trace.text == "".join(t.text for t in trace.tokens)
    assert trace.stats.new_tokens == len(trace.tokens) > 1
    assert sum(r.committed for r in trace.rounds) == len(trace.tokens) - 1
    assert trace.video.grid[0] * trace.video.grid[1] * trace.video.grid[2] > 0
    assert all(trace.vocab.get(str(d)) is not None for r in trace.rounds for d in r.draft_ids)


def test_generate_streams_then_matches_vanilla_for_exact(client):
    from gradio_client import handle_file

    runs = {
        m: RunTrace.from_json(client.predict(handle_file(str(CLIP)), "How many shapes are there?", m,
                                             api_name="/generate"))
        for m in ("vanilla", "exact")
    }
    assert runs["exact"].token_ids == runs["vanilla"].token_ids


@pytest.mark.parametrize(
    ("prompt", "message"),
    [("   ", "empty"), ("x" * 5000, "characters")],
)
def test_bad_prompts_are_refused_with_a_message(client, prompt, message):
    from gradio_client import handle_file

    with pytest.raises(Exception, match=message):
        client.predict(handle_file(str(CLIP)), prompt, "lvspec", api_name="/generate")


def test_unreadable_video_is_refused_and_the_app_keeps_serving(client, tmp_path):
    from gradio_client import handle_file

    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video")
    with pytest.raises(Exception, match="(?i)video"):
        client.predict(handle_file(str(fake)), "Describe the video.", "lvspec", api_name="/generate")
    data = client.predict(handle_file(str(CLIP)), "Describe the video.", "vanilla", api_name="/generate")
    assert RunTrace.from_json(data).text


@pytest.fixture(scope="module")
def page(app_url):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium on this machine")
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
        page.set_default_timeout(WAIT)
        expect.set_options(timeout=WAIT)  # Playwright's 5 s default for assertions fails on a busy CPU
        page.goto(app_url)
        yield page
        browser.close()


def test_browser_example_run_streams_tokens_then_inspector_and_download(page, tmp_path):
    from playwright.sync_api import expect

    page.get_by_text("Example clips and questions").wait_for()
    page.get_by_role("row", name="Describe the video in detail.").first.click()
    expect(page.locator("#video video")).to_be_visible()
    expect(page.get_by_label("Question")).to_have_value("Describe the video in detail.")
    # Count the coloured tokens in the live panel at every change of it, from before the run starts.
    page.evaluate(
        """() => { window.liveCounts = []; const el = document.querySelector('#live');
        new MutationObserver(() => window.liveCounts.push(el.querySelectorAll('.tok').length))
          .observe(el, {subtree: true, childList: true, characterData: true}); }"""
    )
    page.locator("#run").click()
    expect(page.locator("#live .tok").first).to_be_visible()
    page.get_by_role("tab", name="Side by side").click()
    expect(page.locator("#col-vanilla .tok").first).to_be_visible()
    expect(page.get_by_text("Wall time by phase")).to_be_visible()
    counts = [c for c in page.evaluate("window.liveCounts") if c]
    final = page.locator("#live .tok").count()
    assert any(0 < c < final for c in counts), f"tokens appeared only at the end: {counts} → {final}"
    classes = page.locator("#live .tok").evaluate_all("els => els.map(e => e.className)")
    assert all(any(f"v-{v}" in c for v in ("target", "exact", "loose", "shift", "correction", "bonus"))
               for c in classes)
    page.screenshot(path=SHOTS / "side-by-side.png", full_page=True)

    page.get_by_role("tab", name="Live").click()
    page.screenshot(path=SHOTS / "main.png", full_page=True)

    page.get_by_role("tab", name="Inspector").click()
    expect(page.locator("#round-table table")).to_be_visible()
    expect(page.locator("#round-table")).to_contain_text("exact-match SD")
    page.screenshot(path=SHOTS / "inspector.png", full_page=True)

    page.get_by_role("tab", name="Replay").click()
    page.locator("#step").click()
    expect(page.locator("#race .lane")).to_have_count(3)
    page.screenshot(path=SHOTS / "replay.png", full_page=True)

    page.get_by_role("tab", name="Export").click()
    link = page.locator("#exports a[download='runs.json']")
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "runs.json"
    download.value.save_as(saved)
    traces = load_runs(saved)
    assert [t.method for t in traces] == ["lvspec", "exact", "vanilla"]
    assert json.loads(saved.read_text())[0]["text"] == traces[0].text


def hand_built_trace() -> RunTrace:
    from lvspec.trace import Round, Stats, Timing, TokenEvent

    evil = "<script>alert(1)</script>"
    tokens = [TokenEvent(1, "A", "target", False, None, 0),
              TokenEvent(2, " " + evil, "loose", False, 0.1, 1),
              TokenEvent(3, " red", "exact", True, 0.9, 1),
              TokenEvent(4, " star", "correction", True, None, 1)]
    rnd = Round(1, [2, 3, 5], [6, 3, 4, 7], [0.2, 0.9, 0.1], [0.5, 0.9, 0.8], [0.1, 0.9, 0.8], [False, True, True],
                ["loose", "exact", "reject"], 3, 0.01, 0.02, 0.08, [[0, 1], [3, 0], [2]])
    return RunTrace(method="lvspec", params=Settings(k=3), target="t", draft="d", prompt="Describe.",
                    video=VideoInfo("gone.mp4", 4, grid=[2, 1, 2]), text="A " + evil + " red star",
                    tokens=tokens, rounds=[rnd], timing=Timing(prefill_s=0.05, draft_s=0.01, verify_s=0.02, total_s=0.08),
                    stats=Stats(4, 1, 3.0, 40.0), vocab={"2": " " + evil, "3": " red", "5": " big", "6": " a",
                                                         "4": " star", "7": "."})


def test_saved_trace_opens_with_no_model_and_model_text_stays_text(tmp_path):
    import gradio as gr

    import app
    from lvspec.trace import save_runs

    path = tmp_path / "runs.json"
    save_runs([hand_built_trace()], path)
    shown = app.open_saved(str(path), "default")
    assert shown[app.state][0].text == hand_built_trace().text
    html = shown[app.live] + shown[app.columns["lvspec"]]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "no vanilla run here" in shown[app.columns["vanilla"]]
    table = app.inspect_round(shown[app.state], "lvspec", 1, "default")[1]
    assert "<script>" not in table and "“ big”" in table  # the round's words come from the trace itself
    assert sorted(Path(p).name for p in shown[app.exports]) == [
        "acceptance-histogram-lvspec.png", "accepted-length-lvspec.png", "runs.json", "timing.png"]
    images = app.anchor_view(shown[app.state], "lvspec", 1, 1)
    assert len(images) == 2 and images[0][0].shape == (28, 56, 3)  # video gone: heat on a grey 1×2 grid

    bad = tmp_path / "bad.json"
    bad.write_text('{"method": "lvspec", "surprise": 1}')
    with pytest.raises(gr.Error, match="not a valid RunTrace|unknown fields"):
        app.open_saved(str(bad), "default")
    bad.write_text("not json")
    with pytest.raises(gr.Error, match="cannot read a trace"):
        app.open_saved(str(bad), "default")


def test_frontier_tab_shows_the_shipped_sweep_and_refuses_other_json(tmp_path):
    import gradio as gr

    import app

    figure, note = app.frontier()
    shipped = json.loads(app.SHIPPED_SWEEP.read_text())
    assert f"{len(shipped['items'])} items × {len(shipped['configs'])} configs" in note
    assert {t.name for t in figure.data} >= {"exact", "lvspec w=3", "lvspec w=3 unguarded", "random"}
    bad = tmp_path / "trace.json"
    bad.write_text('{"method": "lvspec"}')
    with pytest.raises(gr.Error, match="not a bench or sweep result"):
        app.frontier(str(bad))


def test_serving_leaves_a_core_to_the_web_server_on_a_small_machine():
    import app

    assert app.serving.serving_threads(cores=2, threads=2) == 1
    assert app.serving.serving_threads(cores=1, threads=1) == 1
    assert app.serving.serving_threads(cores=4, threads=4) == 3
    assert app.serving.serving_threads(cores=16, threads=8) == 8  # torch's own choice where cores are plenty


def test_live_view_shows_lvspec_finished_once_the_next_method_starts():
    """The Live tab follows LVSpec's run; when exact-match SD starts, it shows LVSpec's last round, not a
    stale "decoding…" until the whole comparison ends."""
    import app

    clip = str(app.VIDEOS / "three-shapes.mp4")
    updates = list(app.run(clip, "Describe the video in detail.", "", str(app.DRAFT), 4, 0.7, 10, 0, 3, 0.2, 48, 4, 1.0, False,
                           "default"))
    final = {t.method: t for t in updates[-1][app.state]}
    started = next(u for u in updates if app.columns["exact"] in u)
    assert started[app.live_summary] == f"**lvspec** · {app.summary(final['lvspec'])}"
    assert any("decoding…" in u.get(app.live_summary, "") for u in updates)


def test_one_state_run_clears_the_last_views_and_a_saved_trace_brings_back_its_question(tmp_path):
    import app
    from lvspec.trace import save_runs

    clip = str(app.VIDEOS / "three-shapes.mp4")
    updates = list(app.run(clip, "How many shapes are there?", "", str(app.DRAFT), 4, 0.7, 10, 0, 3, 0.2, 16, 4, 1.0,
                           False, "default"))
    first = updates[0]
    assert first[app.diff_html] == "" and first[app.exports] is None and "running" in first[app.stage]
    traces = updates[-1][app.state]
    shown = app.show(traces, "default")
    assert "three-shapes.mp4" in shown[app.stage] and "How many shapes" in shown[app.stage] and "finished" in shown[app.stage]
    path = tmp_path / "runs.json"
    save_runs(traces, path)
    opened = app.open_saved(str(path), "default")
    assert opened[app.prompt] == "How many shapes are there?" and opened[app.k] == 4 and opened[app.frames] == 4
    assert opened[app.video].endswith("three-shapes.mp4") and "opened from runs.json" in opened[app.stage]
