"""The running app, as its users reach it, and under a public Space's load.

First the app as a user starts it: ``python app.py`` as a subprocess on a free port with the embedded pair,
reached through gradio_client on the API and a real browser on the page; and its handlers called directly.

Then the app launched in this process (``app.launch``, as ``python app.py`` does) so that a test can inject
what a CPU cannot produce (CUDA out of memory) or slow a run down to stop it: bad files and models are error
toasts, users queue and each gets their own result, a run can be stopped and another started, out of memory
leaves it usable, and it serves and reads only the files it should.

The browser tests drive Debian's chromium through Playwright (``open_page`` in conftest). Screenshots go to
``test-output/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import media
import pytest
import torch

from conftest import REFUSED, WAIT, free_port, hand_built_trace
from lvspec.trace import RunTrace, load_runs, save_runs

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "assets" / "videos" / "red-circle-right.mp4"
SHOTS = ROOT / "test-output"
QUICK = {"max_new": 8, "frames": 4, "k": 4}  # the in-process app's runs: short


@pytest.fixture(scope="module")
def app_url():
    port = free_port()
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


@pytest.mark.slow
def test_browser_example_run_streams_then_a_click_inspects_a_token_download_and_phone(app_url, open_page, tmp_path):
    from playwright.sync_api import expect

    SHOTS.mkdir(exist_ok=True)
    page = open_page(app_url, viewport={"width": 1500, "height": 1100}, accept_downloads=True)
    page.get_by_text("Example clips and questions").wait_for()
    page.get_by_role("row", name="Describe the video in detail.").first.click()
    expect(page.locator("#video video")).to_be_visible(timeout=WAIT)
    expect(page.get_by_label("Question")).to_have_value("Describe the video in detail.", timeout=WAIT)
    # Count the coloured tokens in the live panel at every change of it, from before the run starts.
    page.evaluate(
        """() => { window.liveCounts = []; const el = document.querySelector('#live');
        new MutationObserver(() => window.liveCounts.push(el.querySelectorAll('.tok').length))
          .observe(el, {subtree: true, childList: true, characterData: true}); }"""
    )
    page.locator("#run").click()
    expect(page.locator("#live .tok").first).to_be_visible(timeout=WAIT)
    page.get_by_role("tab", name="Side by side").click()
    expect(page.locator("#col-vanilla .tok").first).to_be_visible(timeout=WAIT)
    expect(page.get_by_text("Wall time by phase")).to_be_visible(timeout=WAIT)
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
    expect(page.locator("#round-table table")).to_be_visible(timeout=WAIT)
    expect(page.locator("#round-table")).to_contain_text("exact-match SD", timeout=WAIT)

    # A click on a token in Live opens it in the Inspector: its round, its position, where it looks.
    page.get_by_role("tab", name="Live").click()
    expect(page.locator("#live .tok.picked")).to_have_count(0, timeout=WAIT)  # nothing chosen yet
    colour = page.locator("#live .tok.v-exact[data-pos]").filter(has_text=re.compile(r"^\s*red\s*$")).first  # drafted "red"
    at = (colour.get_attribute("data-round"), int(colour.get_attribute("data-pos")))
    colour.click()
    expect(page.locator("#round-table")).to_contain_text(f"Round {at[0]}:", timeout=WAIT)
    expect(page.locator("#round-table th.picked")).to_have_text(str(at[1] + 1), timeout=WAIT)
    expect(page.locator("#heat-note")).to_contain_text("lie on the red circle it names", timeout=WAIT)
    expect(page.locator("#live .tok.picked")).to_have_count(1, timeout=WAIT)
    page.screenshot(path=SHOTS / "inspector.png", full_page=True)
    heat = page.locator("#inspector-tab .grid-wrap img").first.get_attribute("src")
    # A click on another column of the round table (a rejected or unexamined draft too) moves the heat.
    other = 0 if at[1] else 1
    page.locator(f"#round-table td[data-pos='{other}']").first.click()
    expect(page.locator("#round-table th.picked")).to_have_text(str(other + 1), timeout=WAIT)
    expect(page.locator("#inspector-tab .grid-wrap img").first).not_to_have_attribute("src", heat, timeout=WAIT)

    page.get_by_role("tab", name="Replay").click()
    page.locator("#step").click()
    expect(page.locator("#race .lane")).to_have_count(3, timeout=WAIT)
    page.screenshot(path=SHOTS / "replay.png", full_page=True)

    page.get_by_role("tab", name="Export").click()
    link = page.locator("#exports a[download='runs.json']")
    expect(link).to_be_visible(timeout=WAIT)
    assert not page.locator("#exports .label-clear-button").first.is_visible()  # downloads only: no "×"
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "runs.json"
    download.value.save_as(saved)
    traces = load_runs(saved)
    assert [t.method for t in traces] == ["lvspec", "exact", "vanilla"]
    assert json.loads(saved.read_text())[0]["text"] == traces[0].text

    page.set_viewport_size({"width": 420, "height": 900})  # a phone: the answer is on the screen Run is on
    page.reload()  # a fresh page opens on the first example, so Run works before any click
    expect(page.locator("#video video")).to_be_visible(timeout=WAIT)
    expect(page.get_by_label("Question")).to_have_value("Describe the video in detail.", timeout=WAIT)
    page.locator("#run").scroll_into_view_if_needed()
    page.locator("#run").click()
    expect(page.locator("#live .tok").first).to_be_visible(timeout=WAIT)
    run, answer = page.locator("#run").bounding_box(), page.locator("#live .tok").first.bounding_box()
    assert 0 <= answer["y"] + answer["height"] - run["y"] < 900, (run, answer)
    expect(page.get_by_text("finished")).to_be_visible(timeout=WAIT)
    page.screenshot(path=SHOTS / "phone.png", full_page=True)


@pytest.mark.slow
def test_browser_errors_tab_opens_the_shipped_run_and_a_row_fills_the_inspector(app_url, open_page):
    from playwright.sync_api import expect

    page = open_page(app_url, viewport={"width": 1500, "height": 1100})
    page.get_by_role("tab", name="Errors").click()
    expect(page.get_by_text("with changed facts")).to_be_visible(timeout=WAIT)  # the shipped run file, listed
    row = page.locator("#errors-table").get_by_text("changed", exact=True).filter(visible=True).first
    expect(row).to_be_visible(timeout=WAIT)
    row.click()
    expect(page.locator("#banner")).to_contain_text("of run.jsonl", timeout=WAIT)
    page.get_by_role("tab", name="Inspector").click()
    expect(page.locator("#round-table table")).to_be_visible(timeout=WAIT)


def test_saved_trace_opens_with_no_model_and_model_text_stays_text(tmp_path):
    import gradio as gr

    import app

    path = tmp_path / "runs.json"
    save_runs([hand_built_trace()], path)
    shown = app.open_saved(str(path), "default")
    assert shown[app.state][0].text == hand_built_trace().text
    html = shown[app.live] + shown[app.columns["lvspec"]]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "no vanilla run here" in shown[app.columns["vanilla"]]
    table = app.inspect_round(shown[app.state], "lvspec", 1, "default", None)[1]
    assert "<script>" not in table and "“ big”" in table  # the round's words come from the trace itself
    assert sorted(Path(p).name for p in shown[app.exports]) == [
        "acceptance-histogram-lvspec.png", "accepted-length-lvspec.png", "runs.json", "timing.png"]
    chosen = app.choose_position(shown[app.state], "lvspec", 1, 1, "default")
    images = chosen[app.anchor_gallery]
    assert len(images) == 2 and images[0][0].shape == (28, 56, 3)  # video gone: heat on a grey 1×2 grid
    assert "not known here" in chosen[app.heat_note] and chosen[app.picked] == ("lvspec", 1, 1)
    assert 'class="picked' in chosen[app.round_table] and " picked" in chosen[app.live]
    opened = app.show_position(shown[app.state], "lvspec", 1, 1, "default", None)  # not the user's choice
    assert 'class="picked' in opened[app.round_table] and " picked" not in opened[app.live]

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
    updates = list(app.run(clip, "Describe the video in detail.", "", str(app.DRAFT), 4, 0.7, 10, 0, 3, 0.2, 48, 4, 1.0,
                           False, True, "default"))
    final = {t.method: t for t in updates[-1][app.state]}
    started = next(u for u in updates if app.columns["exact"] in u)
    assert started[app.live_summary] == f"**lvspec** · {app.summary(final['lvspec'])}"
    assert any("decoding…" in u.get(app.live_summary, "") for u in updates)


# The app launched in this process.


@pytest.fixture(scope="module")
def app_module():
    import app

    port = free_port()
    app.launch(prevent_thread_lock=True, server_port=port, quiet=True)
    app.url = f"http://127.0.0.1:{port}/"
    yield app
    app.demo.close()


def new_client(app_module):
    """A new session of the in-process app: another user."""
    from gradio_client import Client

    return Client(app_module.url, verbose=False)


def generate(c, video, prompt="Describe the video.", method="lvspec", **settings) -> RunTrace:
    from gradio_client import handle_file

    data = c.predict(handle_file(str(video)), prompt, method, api_name="/generate", **(QUICK | settings))
    return RunTrace.from_json(data)


def refused(c, reason: str, *args, **kwargs) -> str:
    """The toast's message: a gradio Error, one line, matching ``reason``."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=reason) as err:
        generate(c, *args, **kwargs)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    return str(err.value)


def test_bad_videos_are_error_toasts_and_the_app_keeps_serving(app_module, files):
    c = new_client(app_module)
    for kind, reason in REFUSED.items():
        refused(c, reason, files[kind])
    assert generate(c, files["mkv"]).text


@pytest.mark.parametrize("kind", ["one-frame", "8k", "vertical", "rotated", "vfr", "webm, no duration"])
def test_unusual_videos_run(app_module, files, kind):
    trace = generate(new_client(app_module), files[kind])
    assert trace.text and trace.video.path.endswith(files[kind].name)


def test_hour_long_video_runs(app_module, tmp_path):
    trace = generate(new_client(app_module), media.hour_long(tmp_path / "hour.mp4"))
    assert trace.video.seconds == 3600 and trace.video.n_frames == QUICK["frames"]


def test_prompts_blank_long_and_any_unicode(app_module, files):
    c = new_client(app_module)
    refused(c, "the prompt is empty", files["mkv"], "\n \t ")
    refused(c, "characters long", files["mkv"], "why " * 600)
    prompt = "¿Qué pasa? 🎥 视频 \u202eRTL\u202c e\u0301 <script>alert(1)</script>"
    assert generate(c, files["mkv"], prompt).prompt == prompt


def test_unusable_models_are_refused_and_the_pair_stays_usable(app_module, files, tmp_path, monkeypatch):
    c = new_client(app_module)
    shutil.copytree(app_module.TARGET, tmp_path / "copy")
    generate(c, files["mkv"], method="vanilla")
    held = list(app_module.serving.loaded)
    refused(c, "cannot load the target", files["mkv"], method="vanilla", target="org/no-such-model-here")
    assert list(app_module.serving.loaded) == held  # a mistyped name leaves the loaded pair in memory
    refused(c, "a folder this app does not load models from", files["mkv"], method="vanilla", target=str(tmp_path / "copy"))
    refused(c, "a folder this app does not load models from", files["mkv"], method="vanilla", target="/etc")
    refused(c, "a folder this app does not load models from", files["mkv"], target=str(app_module.TARGET / ".." / ".." / ".."))
    with monkeypatch.context() as env:
        env.setenv("LVSPEC_MODEL_DIRS", str(tmp_path))
        config = tmp_path / "copy" / "config.json"
        config.write_text(json.dumps(json.loads(config.read_text()) | {"model_type": "bert"}))
        refused(c, "model type 'bert' is not supported", files["mkv"], method="vanilla", target=str(tmp_path / "copy"))
    assert generate(c, files["mkv"]).text


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB"), MemoryError()])
def test_out_of_memory_is_a_toast_with_a_suggestion_and_the_next_run_works(app_module, files, error):
    c = new_client(app_module)
    generate(c, files["mkv"])  # the default pair is loaded
    (pair,) = app_module.serving.loaded.values()

    def forward(*args, **kwargs):
        raise error

    pair.target.get_decoder().forward = forward  # every decoding step goes through the language model
    try:
        message = refused(c, "out of memory", files["mkv"])
    finally:
        del pair.target.get_decoder().forward
    assert message == f"out of memory: {app_module.MEMORY_HINT}"
    assert generate(c, files["mkv"]).text
    assert next(iter(app_module.serving.loaded.values())) is pair  # kept loaded: only the failed run's memory is freed


def test_a_bug_is_a_short_toast_with_its_traceback_in_the_log_and_a_user_error_one_line(app_module, files, caplog):
    c = new_client(app_module)
    generate(c, files["mkv"])
    (pair,) = app_module.serving.loaded.values()

    def forward(*args, **kwargs):
        raise IndexError("index 7 is out of bounds for dimension 0 with size 3")

    pair.target.get_decoder().forward = forward  # every decoding step goes through the language model
    try:
        with caplog.at_level("ERROR", logger="app"):
            message = refused(c, "Internal error", files["mkv"])
    finally:
        del pair.target.get_decoder().forward
    assert message == "Internal error (IndexError): the server log has the details."
    logged = [r for r in caplog.records if r.name == "app" and r.exc_info]
    assert logged and "index 7 is out of bounds" in logged[0].getMessage() + str(logged[0].exc_info[1])
    caplog.clear()
    with caplog.at_level("ERROR", logger="app"):
        message = refused(c, "the prompt is empty", files["mkv"], "   ")
    assert "\n" not in message and not [r for r in caplog.records if r.name == "app"]
    assert generate(c, files["mkv"]).text


@pytest.mark.slow
def test_five_users_at_once_each_get_their_own_result(app_module, files):
    """Different clips, prompts and frame budgets from five sessions at once: all queue and complete, and
    each trace is the one its user asked for."""
    users = [("gif", "Describe the video.", 2), ("webm", "What colour is it?", 4), ("mkv", "How many shapes?", 6),
             ("avi", "Which way does it move?", 8), ("mov", "Describe the video, please.", 10)]
    results: dict[str, RunTrace | BaseException] = {}

    def user(kind: str, prompt: str, frames: int) -> None:
        try:
            results[kind] = generate(new_client(app_module), files[kind], prompt, frames=frames)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            results[kind] = e

    threads = [threading.Thread(target=user, args=u) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for kind, prompt, frames in users:
        trace = results[kind]
        assert isinstance(trace, RunTrace), trace
        assert trace.prompt == prompt and trace.video.path.endswith(files[kind].name)
        assert trace.video.n_frames == frames and trace.text


class Runs(list):
    """Each decoding run's method, rounds and whether its generator was closed; slow until ``fast`` is set."""

    fast = False


@pytest.fixture
def runs(app_module, monkeypatch):
    """Runs pause a second after each round (long enough to stop one) until the test sets ``runs.fast``."""
    runs = Runs()
    real = app_module.serving.stream

    def slow(pair, clip, prompt, method, settings):
        record = {"method": method, "steps": 0, "closed": False}
        runs.append(record)
        try:
            for trace in real(pair, clip, prompt, method, settings):
                record["steps"] += 1
                yield trace
                time.sleep(0 if runs.fast else 1.0)
        finally:
            record["closed"] = True

    monkeypatch.setattr(app_module.serving, "stream", slow)
    return runs


def test_a_stopped_run_frees_the_models_for_the_next(app_module, files, runs):
    from gradio_client import handle_file

    c = new_client(app_module)
    job = c.submit(handle_file(str(files["mkv"])), "Describe the video.", "lvspec", api_name="/generate",
                   max_new=128, frames=4, k=1)
    deadline = time.perf_counter() + 120
    while (not runs or runs[0]["steps"] < 2) and time.perf_counter() < deadline:
        time.sleep(0.1)
    job.cancel()
    runs.fast = True
    trace = generate(c, files["mov"], "How many shapes?")
    assert trace.prompt == "How many shapes?" and trace.text
    assert runs[0]["closed"] and runs[0]["steps"] < 5  # one round per token: it would have run ~20
    assert len(runs) == 2 and not app_module.serving.busy.locked()


def test_stop_button_cancels_the_run_event(app_module):
    config = app_module.demo.config
    ids = {b._id: b for b in app_module.demo.blocks.values()}
    run_btn = next(i for i, b in ids.items() if getattr(b, "value", None) == "Run: LVSpec, exact SD, vanilla")
    stop_btn = next(i for i, b in ids.items() if getattr(b, "value", None) == "Stop")
    deps = config["dependencies"]
    run_dep = next(d for d in deps if [run_btn, "click"] in [list(t) for t in d["targets"]])
    cancelled = {i for d in deps if [stop_btn, "click"] in [list(t) for t in d["targets"]] for i in d["cancels"]}
    assert run_dep["api_name"] == "run" and run_dep["id"] in cancelled  # the decoding, not only what follows it


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", str(ROOT / "app.py"), str(ROOT / "lvspec" / "video.py"), "/tmp/gradio/../../etc/passwd",
     str(ROOT / "assets" / "videos" / ".." / ".." / "app.py"), "..%2F..%2F..%2Fetc%2Fpasswd",
     str(ROOT / "assets" / "models" / "toy-target" / "config.json"), str(ROOT / ".git" / "config")],
)
def test_the_file_route_serves_nothing_outside_the_allowed_paths(app_module, path):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{app_module.url}gradio_api/file={path}")
    assert err.value.code in (403, 404)


def test_the_file_route_serves_the_shipped_clips(app_module):
    clip = ROOT / "assets" / "videos" / "red-circle-right.mp4"
    with urllib.request.urlopen(f"{app_module.url}gradio_api/file={clip}") as response:
        assert response.read() == clip.read_bytes()


def test_an_input_naming_a_server_file_is_refused(app_module, files):
    """A raw API call that names a file instead of uploading one: Gradio takes only its own uploads."""
    import httpx

    api = new_client(app_module).view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]
    defaults = [p["parameter_default"] for p in api["parameters"][1:]]

    def call(path: str) -> str:
        video = {"path": path, "meta": {"_type": "gradio.FileData"}}
        post = httpx.post(f"{app_module.url}gradio_api/call/generate", json={"data": [video, *defaults]})
        return httpx.get(f"{app_module.url}gradio_api/call/generate/{post.json()['event_id']}", timeout=300).text

    with files["mkv"].open("rb") as f:
        (uploaded,) = httpx.post(f"{app_module.url}gradio_api/upload", files={"files": f}).json()
    assert "event: complete" in call(uploaded)  # the same call with an uploaded file works
    for path in ("/etc/passwd", str(files["mkv"]), str(ROOT / "assets" / "videos" / "red-circle-right.mp4")):
        result = call(path)
        assert "event: error" in result and "root:" not in result


def test_a_saved_trace_cannot_make_the_app_read_other_files(app_module, tmp_path):
    app = app_module
    assert app.readable_video(str(ROOT / "assets" / "videos" / "red-circle-right.mp4"))
    outside = media.encode(tmp_path / "elsewhere.mp4", media.numbered_frames(4, 56, 56))
    for path in ("/etc/passwd", str(ROOT / "app.py"), str(ROOT / "assets" / "videos" / ".." / ".." / "app.py"), str(outside)):
        assert not app.readable_video(path)
    trace = hand_built_trace()
    trace.video.path = str(outside)
    opened = []
    real = app.read_video
    app.read_video = lambda path, *args, **kwargs: opened.append(path) or real(path, *args, **kwargs)
    try:
        chosen = app.choose_position([trace], "lvspec", 1, 1, "default")
        assert app.known_scene(str(outside)) is None and app.known_scene("/etc/passwd") is None
    finally:
        app.read_video = real
    assert chosen[app.anchor_gallery][0][0].shape == (28, 56, 3) and not opened  # drawn on grey: not opened


def open_saved(page, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.locator("#saved-trace button.upload-container").click()
    chooser.value.set_files(str(path))


@pytest.mark.slow
def test_browser_stop_then_run_again_and_hostile_trace_stays_text(app_module, open_page, runs, tmp_path):
    from playwright.sync_api import expect

    page = open_page(app_module.url, viewport={"width": 1400, "height": 1000})
    page.get_by_text("Example clips and questions").wait_for()
    page.get_by_role("row", name="Describe the video.").first.click()
    expect(page.get_by_label("Question")).to_have_value("Describe the video.", timeout=WAIT)  # the click has landed
    expect(page.locator("#video video")).to_be_visible(timeout=WAIT)  # the example's clip is in the box before Run
    page.locator("#run").click()
    expect(page.locator("#live .tok[data-i]").first).to_be_visible(timeout=WAIT)  # the first round is in
    page.get_by_role("button", name="Stop").click()
    runs.fast = True
    expect(page.get_by_text("Stopped. Press Run to start again.")).to_be_visible(timeout=WAIT)
    page.locator("#run").click()  # at once: while the stopped run's current round is still finishing
    page.get_by_role("tab", name="Side by side").click()
    expect(page.get_by_text("Wall time by phase")).to_be_visible(timeout=WAIT)  # drawn once all three have ended
    assert [r["method"] for r in runs] == ["lvspec", "lvspec", "exact", "vanilla"]  # stopped, then a full run
    assert all(r["closed"] for r in runs)
    # Every tab shows the second run, and only it.
    expect(page.locator("#banner")).to_contain_text("finished", timeout=WAIT)
    lvspec_text = page.locator("#col-lvspec .tok").all_inner_texts()
    page.get_by_role("tab", name="Live").click()
    assert page.locator("#live .tok[data-i]").all_inner_texts() == lvspec_text
    page.get_by_role("tab", name="Replay").click()
    expect(page.locator("#race .lane")).to_have_count(3, timeout=WAIT)
    page.get_by_role("tab", name="Inspector").click()
    rounds = page.locator("#round-table").inner_text()
    assert f"Round 1: " in rounds
    page.get_by_role("tab", name="Export").click()
    expect(page.locator("#exports a[download='runs.json']")).to_be_visible(timeout=WAIT)

    evil = hand_built_trace()
    evil.tokens[1].text = ' <img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    save_runs([evil], tmp_path / "runs.json")
    open_saved(page, tmp_path / "runs.json")
    # A saved trace brings back its question and settings, and the banner says where it came from.
    expect(page.locator("#banner")).to_contain_text("opened from runs.json", timeout=WAIT)
    expect(page.get_by_label("Question")).to_have_value(evil.prompt, timeout=WAIT)
    page.locator("#settings").get_by_text("Settings", exact=True).click()
    expect(page.locator("#k input[type=number]")).to_have_value(str(evil.params.k), timeout=WAIT)
    page.get_by_role("tab", name="Live").click()
    expect(page.locator("#live")).to_contain_text('<img src=x onerror="window.pwned=1">', timeout=WAIT)
    assert page.evaluate("window.pwned") is None
    assert page.locator("#live img, #live script").count() == 0

    bad = tmp_path / "bad.json"
    bad.write_text('{"method": "lvspec", "tokens": "<b>"}')
    page.reload()
    open_saved(page, bad)
    expect(page.get_by_text("tokens must be a list")).to_be_visible(timeout=WAIT)


def test_one_state_run_clears_the_last_views_and_a_saved_trace_brings_back_its_question(tmp_path):
    import app
    from lvspec.trace import save_runs

    clip = str(app.VIDEOS / "three-shapes.mp4")
    updates = list(app.run(clip, "How many shapes are there?", "", str(app.DRAFT), 4, 0.7, 10, 0, 3, 0.2, 16, 4, 1.0,
                           False, True, "default"))
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


def test_a_composed_scene_renders_runs_and_has_its_facts_checked():
    import gradio as gr

    import app
    from lvspec.video import read_video

    none = [app.NONE] * 3
    path, prompt = app.compose_clip("blue", "square", "up", "yellow", "star", "still", *none, "gradient")
    assert read_video(path).frames.shape[0] == 16 and prompt == "Describe the video in detail."
    updates = list(app.run(path, prompt, "", str(app.DRAFT), 4, 0.7, 10, 0, 3, 0.2, 48, 4, 1.0, False, True, "default"))
    shown = app.show(updates[-1][app.state], "default")
    assert "blue square moves up; yellow star stays still" in shown[app.facts_md]
    for bad in (("blue", "square", "up", "blue", "star", "up"), ("blue", "square", "up", "red", "square", "up")):
        with pytest.raises(gr.Error, match="its own colour and its own shape"):
            app.compose_clip(*bad, *none, "plain")
    with pytest.raises(gr.Error, match="1 to 3 objects"):
        app.compose_clip(*none, *none, *none, "plain")


def loose_fact_change() -> tuple[str, str]:
    """A shipped clip and question on which LVSpec at λ = 0.95, ε = 0 (loose fillers, no guard) names what the
    clip does not show, found by running the embedded pair: the case the fact flags are for."""
    from lvspec.decode import Settings, generate
    from lvspec.models import load_pair
    from lvspec.toyworld import DRAFT, TARGET, VIDEOS
    from lvspec.toyworld.answers import PROMPTS
    from lvspec.toyworld.factcheck import false_words, scene_of
    from lvspec.video import read_video

    pair = load_pair(str(TARGET), str(DRAFT), device="cpu")
    for item in json.loads((VIDEOS / "examples.json").read_text()):
        scene = scene_of(str(VIDEOS / item["video"]))
        clip = read_video(VIDEOS / item["video"])
        for s in scene.shapes:
            prompt = PROMPTS["medium"].format(colour=s.colour, shape=s.shape)
            trace = generate(pair, clip, prompt, "lvspec", Settings(lam=0.95, min_ratio=0.0, commit_guard=False))
            if false_words([t.text for t in trace.tokens], scene):
                return item["video"], prompt
    pytest.fail("no shipped clip on which λ = 0.95, ε = 0 without the commit guard changes a fact")


def set_slider(page, slider: str, value: str) -> None:
    """Type ``value`` into a slider's number box until the slider holds it: a box typed into while its
    accordion is still opening can be reset to the default when the accordion's contents settle."""
    from playwright.sync_api import expect

    box, bar = page.locator(f"{slider} input[type=number]"), page.locator(f"{slider} input[type=range]")
    for _ in range(4):
        box.fill(value)
        box.press("Enter")
        try:
            expect(bar).to_have_value(value, timeout=3000)
            return
        except AssertionError:
            continue
    expect(bar).to_have_value(value, timeout=WAIT)


@pytest.mark.slow
def test_browser_flags_a_fact_change_at_loose_settings_then_runs_a_composed_scene(app_module, open_page):
    from playwright.sync_api import expect

    name, question = loose_fact_change()
    page = open_page(app_module.url, viewport={"width": 1500, "height": 1100})
    page.get_by_text("Example clips and questions").wait_for()
    row = next(question for path, question in app_module.example_rows() if Path(path).name == name)
    # The page opens on the first example, maybe this very row: empty the question first, so that the row's
    # question coming back shows the click has landed and cannot overwrite the question typed after it.
    page.get_by_label("Question").fill("")
    page.get_by_role("row", name=row).first.click()  # the example row of that clip
    expect(page.get_by_label("Question")).to_have_value(row, timeout=WAIT)
    expect(page.locator("#video video")).to_be_visible(timeout=WAIT)
    page.get_by_label("Question").fill(question)
    expect(page.get_by_label("Question")).to_have_value(question, timeout=WAIT)
    page.locator("#settings").get_by_text("Settings", exact=True).click()
    for slider, value in (("#lam", "0.95"), ("#min-ratio", "0")):
        set_slider(page, slider, value)
    page.locator("#commit-guard input[type=checkbox]").uncheck()
    expect(page.locator("#commit-guard input[type=checkbox]")).not_to_be_checked(timeout=WAIT)
    page.locator("#run").click()
    page.get_by_role("tab", name="Side by side").click()
    expect(page.get_by_text("Wall time by phase")).to_be_visible(timeout=WAIT)
    expect(page.locator("#banner")).to_contain_text("λ 0.95 · ε 0 · w 3", timeout=WAIT)
    expect(page.locator("#banner")).not_to_contain_text("commit guard", timeout=WAIT)
    expect(page.locator("#col-lvspec .tok.false").first).to_be_visible(timeout=WAIT)  # the contradicted word, marked ✗
    expect(page.get_by_text("LVSpec changed the facts")).to_be_visible(timeout=WAIT)
    expect(page.get_by_text("The clip (its facts known")).to_be_visible(timeout=WAIT)  # and the clip's true facts
    page.get_by_role("tab", name="Live").click()
    expect(page.locator("#live .tok.false").first).to_be_visible(timeout=WAIT)
    page.screenshot(path=SHOTS / "fact-flag.png", full_page=True)

    page.get_by_text("Compose a scene").click()  # its first object is a red circle moving right
    page.locator("#compose-render").click()
    expect(page.get_by_label("Question")).to_have_value("Describe the video in detail.", timeout=WAIT)
    expect(page.locator("#video video")).to_have_attribute("src", re.compile(r"red-circle\.mp4"), timeout=WAIT)
    page.locator("#run").click()
    page.get_by_role("tab", name="Side by side").click()
    expect(page.get_by_text("red circle moves right.")).to_be_visible(timeout=WAIT)  # the composed clip's facts, known
    expect(page.locator("#banner")).to_contain_text("red-circle.mp4", timeout=WAIT)
