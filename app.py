"""LVSpec Studio: watch loosely speculative decoding beside vanilla and exact-match SD, and inspect it.

UI only: the decoding is ``lvspec``'s, every view is drawn by ``viz`` from RunTraces, so a saved trace
re-opens here with no model loaded. ``python app.py`` serves it on http://127.0.0.1:7860.
"""

from __future__ import annotations

try:  # ZeroGPU on Spaces: must come before torch; elsewhere the decorator is a no-op
    import spaces

    gpu = spaces.GPU(duration=120)
except ImportError:

    def gpu(fn):
        return fn


import functools
import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
import torch

import viz
from lvspec import serving
from lvspec.bench import read_result
from lvspec.decode import METHODS, Settings
from lvspec.errors import UserError, checked_prompt, memory_errors, out_of_memory
from lvspec.pruning import KEEP
from lvspec import runfile
from lvspec.error_list import error_list
from lvspec.toyworld import DRAFT, TARGET, VIDEOS
from lvspec.toyworld.factcheck import fact_report, false_words, look_report, masks_of, remember, scene_of
from lvspec.toyworld.samples import compose, write_clip
from lvspec.toyworld.world import BACKGROUNDS, COLOURS, MOTIONS, SHAPES
from lvspec.trace import Round, RunTrace, load_runs
from lvspec.video import VideoError, VideoLimits, read_video
from viz.anchors import overlays
from viz.race import next_moment, next_round, race_html

log = logging.getLogger(__name__)

COMPARED = ("lvspec", "exact", "vanilla")  # run one after another, each timed alone; LVSpec first to watch it
REDRAW_S = 0.05  # the live view redraws at most this often (a small model commits a round every few ms)
NONE = "—"  # a Compose row left empty
RACE_LENGTHS = ["5 s", "10 s", "20 s", "40 s"]  # how long a replayed race lasts, whatever the runs took
SHIPPED_SWEEP = Path(__file__).parent / "docs" / "bench" / "sweep.json"  # `python -m lvspec sweep --json` output
QUEUE_SIZE = 64  # runs waiting beyond this are turned away with a message rather than left to pile up
MEMORY_HINT = "try fewer frames, a smaller K or fewer new tokens, or a smaller model pair"
STOPPED = "**Stopped.** Press Run to start again."


# The export list is for downloading: its files cannot be removed from it. On a phone the controls' column
# dissolves into the page so the results come straight after Run, and the examples, settings and file box
# after the results.
CSS = """
#exports .label-clear-button { display: none; }
@media (max-width: 700px) {
  #controls { display: contents; }
  #controls > * { order: 0; width: 100%; }
  #results { order: 1; width: 100%; }
  #controls > #run-row ~ * { order: 2; }
}
"""


Picked = tuple[str, int, int]  # a drafted token: its run's method, its round, its position in the round

# A click on a drafted token (Live, Side by side) or a round-table cell: which run, round and position.
PICK_JS = """element.addEventListener('click', (e) => {
  const cell = e.target.closest('[data-pos]'), run = e.target.closest('[data-method]');
  if (cell && run) trigger('pick', {method: run.dataset.method, round: +cell.dataset.round, pos: +cell.dataset.pos});
});"""


def banner(traces: list[RunTrace], status: str) -> str:
    """Above every tab: which clip, question and settings the views show, and in what state."""
    t = traces[0]
    return f"**Shown:** {viz.run_label(t.video.path, t.prompt, t.params)} — *{status}*"

HEADER = """
# LVSpec Studio
**Loosely speculative decoding for video LLMs, token by token.** A small *draft* model proposes K tokens;
the *target* checks them in one pass. Exact-match speculative decoding keeps a draft token only if it is the
target's own choice; **LVSpec** checks the few *visual anchors* (colours, shapes, motions, counts, and by
rule a multiple-choice answer's option) strictly, accepts *fillers* loosely (not one right before an anchor: it may
have chosen that fact) and salvages tokens the target says a position or two away.
Press **Run** on the clip shown (or pick another example), then replay the race, step through the rounds, or see
where an anchor looks.

*The built-in pair is a toy* (Qwen2.5-VL class, a few MB, runs on a CPU) trained on clips of coloured shapes: it
knows circles, squares, triangles and stars in seven colours, moving, growing or still, and nothing else; a
real clip needs a real pair (type hub ids under **Model pair**). Its target was trained with a
*relevance-alignment loss* so that it has the property the paper reports of large video LLMs: the hidden
states of visual words lie near the video tokens of what they name. `python -m lvspec anchors` measures that
property on any pair.
"""


# ---- models: one pair in memory, one decoding step at a time (lvspec.serving) ----

decode_runs = gpu(serving.decode_runs)


def load(target: str, draft: str, progress) -> serving.PairKey:
    return serving.load(target, draft, lambda fraction, message: progress(fraction, desc=message))


def settings_from(k, lam, top_n, tau, window, min_ratio, max_new_tokens, draft_keep, self_draft,
                  commit_guard) -> Settings:
    return Settings(
        k=int(k), lam=float(lam), top_n=int(top_n), tau=float(tau) if tau else None, window=int(window),
        min_ratio=float(min_ratio), max_new_tokens=int(max_new_tokens), draft_keep=float(draft_keep),
        self_draft=bool(self_draft), commit_guard=bool(commit_guard),
    )


def user_errors(fn):
    """Run ``fn`` (a generator) turning a UserError into its one-line toast; anything else is a bug: its
    traceback goes to the server log and the toast says so in one line.

    Out of memory keeps the pair loaded (the next run, with smaller settings, needs it) but frees what the
    failed run held, once outside the ``except`` block whose traceback still references it.
    """

    @functools.wraps(fn)  # the API names its parameters after fn's
    def wrapped(*args, **kwargs):
        try:
            yield from fn(*args, **kwargs)
            return
        except gr.Error:
            raise
        except UserError as e:
            raise gr.Error(str(e)) from None
        except memory_errors():
            pass
        except Exception as e:
            log.exception("internal error in %s", fn.__name__)
            raise gr.Error(f"Internal error ({type(e).__name__}): the server log has the details.") from None
        raise gr.Error(str(out_of_memory(MEMORY_HINT))) from None

    return wrapped


# ---- views: everything below draws from RunTraces only ----


def summary(trace: RunTrace) -> str:
    s, t = trace.stats, trace.timing
    return (f"{s.new_tokens} tokens · E[T] {s.mean_accepted_length:.2f} (max {trace.accepted_ceiling:.2f}) · "
            f"{s.tokens_per_s:.1f} tok/s · {t.total_s:.2f} s")


def answer_html(trace: RunTrace, palette: str, picked: Picked | None = None) -> str:
    """The answer's tokens; where the clip's facts are known (a shipped or composed scene), the words it
    contradicts are marked; the token chosen in the Inspector (``picked``) is outlined."""
    scene = known_scene(trace.video.path)
    false = false_words([t.text for t in trace.tokens], scene) if scene else frozenset()
    at = picked[1:] if picked and picked[0] == trace.method else None
    return viz.tokens_html(trace, palette, false=false, picked=at)


def column_html(trace: RunTrace | None, palette: str, missing: str = "waiting…", picked: Picked | None = None) -> str:
    if trace is None:
        return f"<p><i>{missing}</i></p>"
    return f"<p><b>{trace.method}</b> · {summary(trace)}</p>" + answer_html(trace, palette, picked)


def main_run(traces: list[RunTrace]) -> RunTrace:
    """The run Live shows: LVSpec's where there is one."""
    return by_method(traces).get("lvspec") or traces[-1]


def by_method(traces: list[RunTrace]) -> dict[str, RunTrace]:
    return {t.method: t for t in traces}


def views(traces: list[RunTrace], palette: str) -> dict:
    """Every view of a finished comparison (or a saved trace): columns, charts, diff, inspector, exports."""
    runs = by_method(traces)
    main = main_run(traces)
    drafted = [t for t in traces if t.draft is not None]
    vanilla = runs.get("vanilla")
    speedup = None
    if vanilla is not None and drafted:
        k = drafted[0].params.k
        speedup = viz.speedup_curve_figure(viz.speedup_points(traces), k, viz.step_cost_ratio(traces))
    diff, facts = "<p><i>needs a vanilla and an LVSpec run</i></p>", ""
    if vanilla is not None and "lvspec" in runs:
        diff = viz.word_diff_html(vanilla.text, runs["lvspec"].text)
        scene = known_scene(main.video.path)
        if scene is not None or main.target == str(TARGET):  # answers in the toy world's words: facts parse
            facts = fact_report(main.prompt, vanilla.text, runs["lvspec"].text, scene)
    inspected = [t.method for t in drafted]
    return {
        live: viz.legend_html(palette) + answer_html(main, palette),
        live_summary: f"**{main.method}** · {summary(main)}",
        **{columns[m]: column_html(runs.get(m), palette, missing=f"no {m} run here") for m in COMPARED},
        timing_plot: viz.timing_figure(traces),
        speedup_plot: speedup,
        diff_html: diff,
        facts_md: facts,
        inspect_method: gr.Radio(choices=inspected, value=inspected[0] if inspected else None),
        race: race_html(traces, 0.0, palette),
        race_t: 0.0,
        picked: None,
        heat_note: "",
    }


# ---- event handlers ----


@user_errors
def run(video, prompt, target, draft, k, lam, top_n, tau, window, min_ratio, max_new, frames, draft_keep, self_draft,
        commit_guard, palette, progress=gr.Progress()):
    if not video:
        raise gr.Error("Upload a video or pick one of the examples first.")
    prompt = checked_prompt(prompt)
    settings = settings_from(k, lam, top_n, tau, window, min_ratio, max_new, draft_keep, self_draft, commit_guard)
    key = load(target, "" if self_draft else draft, progress)
    running = f"**Shown:** {viz.run_label(video, prompt, settings)} — *running: the other tabs fill in when it ends*"
    # nothing of the previous run stays on screen beside this one
    yield cleared | {inspect_method: gr.Radio(choices=[], value=None), stage: running}
    runs: dict[str, RunTrace] = {}  # each method's trace, growing in place
    drawn = 0.0
    for method, trace in decode_runs(key, video, prompt, settings, frames, COMPARED):
        first_round = method not in runs
        runs[method] = trace
        if time.perf_counter() - drawn < REDRAW_S and not first_round:
            continue
        drawn = time.perf_counter()
        update = {columns[m]: column_html(t, palette) for m, t in runs.items()}  # earlier runs: final state
        if method == "lvspec" or first_round and "lvspec" in runs:  # LVSpec's last rounds, once it has ended
            update[live] = viz.legend_html(palette) + answer_html(runs["lvspec"], palette)
            ending = " · decoding…" if method == "lvspec" else ""
            update[live_summary] = f"**lvspec** · {summary(runs['lvspec'])}{ending}"
        yield update
    yield {state: [runs[m] for m in COMPARED]}


COMPOSED = Path(tempfile.gettempdir()) / "lvspec-scenes"  # clips the Compose panel rendered
SHIPPED_RUN = Path(__file__).parent / "docs" / "bench" / "run.jsonl"  # `bench --run` on the toy suite
ERROR_COLUMNS = ["item", "config", "facts", "parts at", "verdict", "drafted → target", "question"]


def open_errors(file=None):
    """A run file's error list (the shipped one by default) as a table, worst first, and the list itself."""
    path = file or (SHIPPED_RUN if SHIPPED_RUN.exists() else None)
    if path is None:
        return [], [], "*No run file: `python -m lvspec bench --run run.jsonl`, then open it here.*"
    try:
        run = runfile.load(path)
        found = error_list(run)
    except UserError as e:
        raise gr.Error(str(e)) from None
    rows = [[d.index, d.config, "changed" if d.facts_changed else "kept",
             f"round {d.parting.round}, d{d.parting.position + 1}" if d.parting and d.parting.position is not None
             else "—", d.parting.verdict if d.parting else "—",
             f"“{d.parting.drafted}” → “{d.parting.target}”" if d.parting and d.parting.drafted else "—",
             " ".join(d.prompt.split())[:60]] for d in found]
    changed = sum(d.facts_changed for d in found)
    note = (f"{Path(path).name}: {len(found)} answers a lossy method changed over {len(run.items)} items, "
            f"{changed} with changed facts. Choose a row: its runs open in every tab, the Inspector at the round "
            "where the answers part.")
    return rows, [(str(path), d.index, d.config) for d in found], note


def open_error(chosen: list, palette: str, evt: gr.SelectData):
    """The chosen row's runs (the lossy one, exact-match SD's and vanilla's) in every view, the Inspector on
    the round where its answer leaves vanilla's."""
    if not chosen or evt.index is None:
        return {}
    path, index, config = chosen[evt.index[0]]
    saved = next(s for s in runfile.load(path).items if s.index == index)
    lossy = replace(saved.traces[config][0], method="lvspec")  # the views show the lossy run as LVSpec's
    traces = [lossy, *(saved.traces[m][0] for m in ("exact", "vanilla") if m in saved.traces)]
    where = next(d.parting for d in error_list(runfile.load(path), [config]) if d.index == index)
    rnd = where.round if where and where.round else 1
    return ({state: traces} | show(traces, palette, f"item {index} of {Path(path).name}, {config}")
            | {inspect_method: gr.Radio(choices=["lvspec"], value="lvspec"), round_index: rnd})


def compose_clip(*choices):
    """Render the scene chosen in the Compose panel (three (colour, shape, motion) rows, a row left at "—" has
    no object, then the background) and put it in the video box, its facts known to the fact check."""
    *rows, background = choices
    objects = [tuple(rows[i : i + 3]) for i in range(0, len(rows), 3) if NONE not in rows[i : i + 3]]
    try:
        scene = compose(objects, background)
    except UserError as e:
        raise gr.Error(str(e)) from None
    name = "-".join(f"{c}-{s}" for c, s, _ in objects)
    COMPOSED.mkdir(exist_ok=True)
    path = write_clip(scene, Path(tempfile.mkdtemp(dir=COMPOSED)) / f"{name}.mp4")
    remember(path, scene)
    return str(path), "Describe the video in detail."


def show(traces: list[RunTrace], palette: str, status: str = "finished"):
    if not traces:
        return {}
    files = viz.save_all(traces, Path(tempfile.mkdtemp(prefix="lvspec-")), palette)
    return views(traces, palette) | {exports: files, stage: banner(traces, status)}


def stopped():
    return STOPPED, "**Stopped.** Live and Side by side keep the partial runs; the other tabs were cleared."


def open_saved(file, palette):
    if file is None:
        return {}
    try:
        traces = load_runs(file)
    except UserError as e:
        raise gr.Error(str(e)) from None
    return {state: traces} | show(traces, palette, f"opened from {Path(file).name}") | asked(traces[0])


def asked(trace: RunTrace) -> dict:
    """The question and settings a saved run was asked with, back in their boxes, and its clip where it is
    a shipped one (an upload's copy is gone with the session that made it)."""
    s = trace.params
    clip = VIDEOS / Path(trace.video.path or "").name
    return {prompt: trace.prompt, k: s.k, lam: s.lam, top_n: s.top_n, tau: s.tau or 0, window: s.window,
            min_ratio: s.min_ratio, max_new: s.max_new_tokens, frames: trace.video.n_frames or 16,
            draft_keep: s.draft_keep, self_draft: s.self_draft, commit_guard: s.commit_guard
            } | ({video: str(clip)} if scene_of(str(clip)) else {})


def round_number(trace: RunTrace, index: float | None) -> int:
    """The round a slider value names, within the run's rounds (a slider may hold a float or nothing)."""
    return int(min(max(1, index or 1), len(trace.rounds)))


def inspect_round(traces: list[RunTrace], method: str | None, index: float, palette: str, picked: Picked | None):
    trace = by_method(traces or []).get(method)
    if trace is None or not trace.rounds:
        return gr.Slider(), "<p><i>run a drafting method first</i></p>", None, None, gr.Dropdown(choices=[])
    index = round_number(trace, index)
    drafted = viz.drafted_positions(trace, index)  # this round's, rejected drafts too
    first = next((pos for pos, a in enumerate(trace.rounds[index - 1].anchor) if a), 0) if drafted else None
    if picked and picked[:2] == (method, index):  # a click chose this round's position
        first = picked[2]
    return (
        # Gradio needs minimum < maximum: a one-round run gets a fixed slider
        gr.Slider(minimum=1, maximum=max(2, len(trace.rounds)), value=index, step=1,
                  interactive=len(trace.rounds) > 1),
        viz.round_table_html(trace, index, palette=palette, picked=first),
        viz.accepted_length_figure(trace, palette),
        viz.acceptance_histogram(trace),
        gr.Dropdown(choices=drafted, value=first),
    )


def pick(traces: list[RunTrace], palette: str, evt: gr.EventData):
    """A drafted token clicked in Live, Side by side or the round table: the Inspector opens on its run, round
    and position (rejected drafts are clickable in the round table)."""
    trace = by_method(traces or []).get(evt.method)
    if trace is None or trace.draft is None or not 1 <= int(evt.round) <= len(trace.rounds):
        return {}  # a token of a run without drafts, or of a run still decoding
    chosen = (trace.method, int(evt.round), int(evt.pos))
    return ({picked: chosen, inspect_method: trace.method, round_index: chosen[1], tabs: gr.Tabs(selected="inspector"),
             anchor_token: gr.Dropdown(choices=viz.drafted_positions(trace, chosen[1]), value=chosen[2])}
            | show_position(traces, *chosen, palette, chosen))


def show_position(traces: list[RunTrace], method: str | None, index: float, position: int | None, palette: str,
                  chosen: Picked | None):
    """The Inspector's drafted position: its column in the round table, where it looks on the frames and how
    much of that lies on an object; its token outlined in Live and Side by side where the user ``chosen`` it
    (a click, or the drop-down), not where the Inspector merely opened on a round's first anchor."""
    trace = by_method(traces or []).get(method)
    if trace is None or position is None or not trace.rounds:
        return {anchor_gallery: [], heat_note: ""}
    index = round_number(trace, index)
    here = (trace.method, index, int(position))
    mark = chosen if chosen == here else None
    runs, main = by_method(traces), main_run(traces)
    return ({round_table: viz.round_table_html(trace, index, palette=palette, picked=here[2]),
             live: viz.legend_html(palette) + answer_html(main, palette, mark),
             **{columns[m]: column_html(runs.get(m), palette, f"no {m} run here", mark) for m in COMPARED}}
            | where_it_looks(trace, trace.rounds[index - 1], here[2]))


def choose_position(traces: list[RunTrace], method: str | None, index: float, position: int | None, palette: str):
    """The user chose a drafted position from the Inspector's list: shown, and marked in the answers."""
    trace = by_method(traces or []).get(method)
    if trace is None or position is None or not trace.rounds:
        return {}
    chosen = (trace.method, round_number(trace, index), int(position))
    return {picked: chosen} | show_position(traces, method, index, position, palette, chosen)


def where_it_looks(trace: RunTrace, rnd: Round, position: int) -> dict:
    """A drafted token's top-N video tokens as heat on the clip's frames and, where the clip's objects are
    known (a shipped or composed scene), how many of them lie on an object."""
    if trace.video.grid is None or not rnd.looks or position >= len(rnd.looks):
        return {anchor_gallery: [], heat_note: "*This run recorded no video tokens for this position.*"}
    clip = None
    path = trace.video.path
    if path and readable_video(path):
        try:
            clip = read_video(path, VideoLimits(max_frames=trace.video.n_frames))
        except VideoError:
            clip = None
    looks = rnd.looks[position]
    note = "*The clip's objects are not known here (only for shipped and composed clips).*"
    scene = known_scene(path)
    if clip is not None and scene is not None:
        masks = masks_of(path)
        word = trace.token_text(rnd.draft_ids[position])
        note = look_report(looks, trace.video.grid, masks[np.clip(clip.indices, 0, len(masks) - 1)], scene, word)
    return {anchor_gallery: overlays(looks, trace.video.grid, clip.frames if clip else None), heat_note: note}


def known_scene(path: str | None):
    """The facts of a clip the app may read (`readable_video`) that is a shipped or composed scene, else None."""
    return scene_of(path) if path and readable_video(path) else None


def readable_video(path: str) -> bool:
    """Whether a trace's video may be read here: a shipped clip or an upload, never any other file
    (a saved trace names whatever path its author wrote into it)."""
    real = Path(path).resolve()
    roots = (VIDEOS, COMPOSED, Path(gr.utils.get_upload_folder()))
    return real.is_file() and any(real.is_relative_to(root.resolve()) for root in roots)


def play(traces: list[RunTrace], t: float, length: str, palette: str):
    """Advance the race from where it stands until every run ends, the recorded times stretched so that the
    whole race lasts ``length`` ("10 s"): a CPU race of a few hundred milliseconds, watchable."""
    if not traces:
        return
    end = max(trace.timing.total_s for trace in traces)
    scale = float(length.rstrip(" s")) / end
    t0, wall0 = (0.0 if t >= end else t), time.perf_counter()
    while True:
        t = min(end, t0 + (time.perf_counter() - wall0) / scale)
        yield race_html(traces, t, palette), t
        if t >= end:
            return
        time.sleep(0.04)


def step(traces: list[RunTrace], t: float, palette: str, by_round: bool = True):
    """One target pass of the watched run (LVSpec), or (``by_round`` False) up to the next token any run commits."""
    if not traces:
        return "", 0.0
    t = (next_round if by_round else next_moment)(traces, t)
    return race_html(traces, t, palette), t


@user_errors
def api_generate(video, prompt, method, target, draft, k, lam, top_n, tau, window, min_ratio, max_new, frames,
                 draft_keep=1.0, self_draft=False, commit_guard=True, progress=gr.Progress()):
    """One run of ``method`` on the video and prompt; returns its RunTrace as a JSON string.

    A string, not a JSON component: gradio_client takes any object with a "path" key (the trace's video
    record has one) for a file to download and replaces it.
    """
    if not video:
        raise gr.Error("no video given")
    if method not in METHODS:
        raise gr.Error(f"unknown method '{method}' (choose from {', '.join(METHODS)})")
    settings = settings_from(k, lam, top_n, tau, window, min_ratio, max_new, draft_keep, self_draft, commit_guard)
    key = load(target, "" if self_draft else draft, progress)
    trace = None
    for _, trace in decode_runs(key, video, checked_prompt(prompt), settings, frames, methods=(method,)):
        yield gr.skip()  # after every round: where a client's cancel can end the run
    yield trace.to_json()


def frontier(file=None):
    """The speed/quality frontier of a sweep or bench JSON: an uploaded one, else the one shipped in docs/."""
    path = file or (SHIPPED_SWEEP if SHIPPED_SWEEP.exists() else None)
    if path is None:
        return None, "*No sweep shipped: run `python -m lvspec sweep --json sweep.json` and open it here.*"
    try:
        result = read_result(path)
    except UserError as e:
        raise gr.Error(str(e)) from None
    figure = viz.frontier_figure(result)
    items, machine = len(result.get("items", [])), result.get("machine", {})
    where = f" on {machine.get('name', '?')} ({machine.get('device', '?')})" if machine else ""
    return figure, f"{Path(path).name}: {items} items × {len(result['configs'])} configs{where}."


# ---- layout ----


def example_rows() -> list[list[str]]:
    """The shipped clips beside their questions (``assets/videos/examples.json``)."""
    index = VIDEOS / "examples.json"
    if not index.exists():
        return []
    items = json.loads(index.read_text())
    # One row per clip, the questions cycling through the kinds so that every kind is one click away.
    return [[str(VIDEOS / item["video"]), item["prompts"][i % len(item["prompts"])]] for i, item in enumerate(items)]


EXAMPLES = example_rows()
FIRST = EXAMPLES[0] if EXAMPLES else [None, "Describe the video."]  # shown at start: Run works at once

with gr.Blocks(title="LVSpec Studio") as demo:
    gr.Markdown(HEADER)
    state = gr.State([])
    picked = gr.State(None)  # the drafted token chosen in the Inspector: (method, round, position)
    race_t = gr.State(0.0)
    with gr.Row():
        with gr.Column(scale=2, min_width=320, elem_id="controls"):
            video = gr.Video(FIRST[0], label="Video", sources=["upload"], height=260, elem_id="video")
            prompt = gr.Textbox(label="Question", value=FIRST[1], max_lines=8)
            with gr.Row(elem_id="run-row"):
                run_btn = gr.Button("Run: LVSpec, exact SD, vanilla", variant="primary", elem_id="run")
                stop_btn = gr.Button("Stop", variant="stop")
            gr.Examples(EXAMPLES, inputs=[video, prompt], label="Example clips and questions",
                        examples_per_page=8)
            with gr.Accordion("Compose a scene", open=False, elem_id="compose"):
                gr.Markdown("1–3 objects the built-in pair knows, each its own colour and shape; Render puts the "
                            "clip in the video box, and its facts are then known to the fact check.")
                picks = []
                for i, (colour, shape, motion) in enumerate((("red", "circle", "right"), (NONE, NONE, NONE),
                                                              (NONE, NONE, NONE))):
                    with gr.Row():
                        picks += [gr.Dropdown([NONE, *COLOURS], value=colour, label=f"object {i + 1}: colour"),
                                  gr.Dropdown([NONE, *SHAPES], value=shape, label="shape"),
                                  gr.Dropdown([NONE, *MOTIONS], value=motion, label="motion")]
                scene_background = gr.Dropdown(list(BACKGROUNDS), value="plain", label="background")
                compose_btn = gr.Button("Render", elem_id="compose-render")
                compose_btn.click(compose_clip, [*picks, scene_background], [video, prompt], api_visibility="private")
            with gr.Accordion("Settings", open=False, elem_id="settings"):
                d = Settings()
                k = gr.Slider(1, 16, value=d.k, step=1, label="K: draft tokens per round", elem_id="k")
                lam = gr.Slider(0, 1, value=d.lam, step=0.05, label="λ: share of each round relaxed as fillers",
                                elem_id="lam")
                top_n = gr.Slider(1, 64, value=d.top_n, step=1, label="top-N video tokens in relevance")
                tau = gr.Slider(0, 1, value=d.tau or 0, step=0.01,
                                label="τ: relevance that always makes an anchor (0 = off)")
                window = gr.Slider(0, 5, value=d.window, step=1, label="w: position-shift tolerance (0 = off)")
                min_ratio = gr.Slider(0, 1, value=d.min_ratio, step=0.05,
                                      label="ε: filler guard, p(draft) ≥ ε·p(target)", elem_id="min-ratio")
                commit_guard = gr.Checkbox(d.commit_guard, elem_id="commit-guard",
                                           label="commit guard: a filler right before an anchor is judged strictly")
                max_new = gr.Slider(8, 512, value=d.max_new_tokens, step=8, label="max new tokens")
                frames = gr.Slider(2, 64, value=16, step=2, label="frames sampled from the video")
                palette = gr.Radio(list(viz.PALETTES), value="default", label="token colours")
            with gr.Accordion("Model pair", open=False):
                target = gr.Textbox(label="Target: hub id or local folder", value=str(TARGET))
                draft = gr.Textbox(label="Draft: same tokenizer as the target", value=str(DRAFT))
                self_draft = gr.Checkbox(False, label="Self-SD: the target drafts for itself (the draft box is unused)")
                draft_keep = gr.Slider(0.02, 1, value=1, step=0.02, label="share of the video tokens the draft reads")
                self_draft.input(lambda on: KEEP if on else 1.0, self_draft, draft_keep, api_visibility="private")
            saved = gr.File(label="Open a saved trace (runs.json or a CLI --json file)", file_types=[".json"],
                            elem_id="saved-trace")
        with gr.Column(scale=3, elem_id="results"):
            stage = gr.Markdown("*Nothing run yet: press Run, or pick another example first.*", elem_id="banner")
            with gr.Tabs() as tabs:
                with gr.Tab("Live", id="live"):
                    live_summary = gr.Markdown()
                    live = gr.HTML(viz.legend_html(), elem_id="live", js_on_load=PICK_JS)
                with gr.Tab("Side by side", id="side"):
                    with gr.Row():  # side by side where there is room, one under another on a phone
                        columns = {}
                        for m in COMPARED:
                            with gr.Column(min_width=260):
                                columns[m] = gr.HTML(column_html(None, "default"), elem_id=f"col-{m}",
                                                     js_on_load=PICK_JS)
                    timing_plot = gr.Plot(label="Where the time went")
                    gr.Markdown("**What loose verification changed** (LVSpec's answer against vanilla's, word by word)")
                    diff_html = gr.HTML()
                    facts_md = gr.Markdown()
                    speedup_plot = gr.Plot(label="Why it is fast")
                with gr.Tab("Replay", id="replay"):
                    with gr.Row():
                        length = gr.Radio(RACE_LENGTHS, value="10 s", label="race lasts")
                        play_btn = gr.Button("Play", elem_id="play")
                        pause_btn = gr.Button("Pause")
                        step_btn = gr.Button("Step one round", elem_id="step")
                        token_btn = gr.Button("Step one token", elem_id="step-token")
                    gr.Markdown("The recorded times, stretched to the chosen length. A round is one target pass of "
                                "LVSpec; each bar is the share of that run's own answer committed so far.")
                    race = gr.HTML(elem_id="race")
                    play_event = play_btn.click(play, [state, race_t, length, palette], [race, race_t],
                                                api_visibility="private")
                    pause_btn.click(None, cancels=[play_event])
                    step_btn.click(step, [state, race_t, palette], [race, race_t], cancels=[play_event],
                                   api_visibility="private")
                    token_btn.click(lambda traces, t, p: step(traces, t, p, by_round=False), [state, race_t, palette],
                                    [race, race_t], cancels=[play_event], api_visibility="private")
                with gr.Tab("Inspector", id="inspector", elem_id="inspector-tab"):
                    with gr.Row():
                        inspect_method = gr.Radio([], label="run")
                        round_index = gr.Slider(1, 2, value=1, step=1, label="round")
                    gr.Markdown("Click a column of the round table, or a token in Live or Side by side, to see where "
                                "that drafted token looks. The *why* row names the rule behind each verdict: LVSpec "
                                "rejects an anchor that differs from the target's token, and a filler that does where "
                                "p(draft) < ε·p(own choice) or, with the commit guard, where the next position is an "
                                "anchor.")
                    round_table = gr.HTML(elem_id="round-table", js_on_load=PICK_JS)
                    with gr.Row():
                        lengths_plot = gr.Plot(label="accepted length per round")
                        histogram_plot = gr.Plot(label="accepted lengths")
                    gr.Markdown("**Where a drafted token looks**: its top-N most similar video tokens, lit on the "
                                "frames (rejected drafts too)")
                    anchor_token = gr.Dropdown([], label="drafted position of this round")
                    heat_note = gr.Markdown(elem_id="heat-note")
                    anchor_gallery = gr.Gallery(label="top-N video tokens", columns=4, height=300)
                    inspect_inputs = [state, inspect_method, round_index, palette, picked]
                    inspect_outputs = [round_index, round_table, lengths_plot, histogram_plot, anchor_token]
                    inspect_method.change(inspect_round, inspect_inputs, inspect_outputs, api_visibility="private")
                    round_index.change(inspect_round, inspect_inputs, inspect_outputs, api_visibility="private")
                    position_views = [round_table, live, *columns.values(), anchor_gallery, heat_note]
                    position_inputs = [state, inspect_method, round_index, anchor_token, palette]
                    anchor_token.change(show_position, [*position_inputs, picked], position_views,
                                        api_visibility="private")
                    anchor_token.input(choose_position, position_inputs, [picked, *position_views],
                                       api_visibility="private")
                    for view in (live, *columns.values(), round_table):
                        view.pick(pick, [state, palette],
                                  [picked, inspect_method, round_index, tabs, anchor_token, *position_views],
                                  api_visibility="private")
                with gr.Tab("Frontier", id="frontier"):
                    gr.Markdown("**Speed against quality kept** over a suite of clips: LVSpec at each λ and shift "
                                "window, the random-relaxation and FLy peers, exact-match SD and vanilla "
                                "(`python -m lvspec sweep`).")
                    frontier_note = gr.Markdown()
                    frontier_plot = gr.Plot(label="speed/quality frontier")
                    sweep_file = gr.File(label="Open a sweep or bench JSON", file_types=[".json"])
                    demo.load(frontier, None, [frontier_plot, frontier_note], api_visibility="private")
                    sweep_file.upload(frontier, sweep_file, [frontier_plot, frontier_note], api_visibility="private")
                with gr.Tab("Errors", id="errors"):
                    gr.Markdown("**Where loose verification changed an answer**, over a whole run of `bench "
                                "--run` (the shipped one: the toy suite at the defaults), worst first.")
                    errors_note = gr.Markdown()
                    errors_table = gr.Dataframe(headers=ERROR_COLUMNS, interactive=False, elem_id="errors-table")
                    errors_file = gr.File(label="Open a run file (bench --run)", file_types=[".jsonl"])
                    errors_found = gr.State([])
                    demo.load(open_errors, None, [errors_table, errors_found, errors_note], api_visibility="private")
                    errors_file.upload(open_errors, errors_file, [errors_table, errors_found, errors_note],
                                       api_visibility="private")
                with gr.Tab("Export", id="export"):
                    exports = gr.File(label="RunTraces (runs.json) and charts (PNG)", file_count="multiple",
                                      interactive=False, elem_id="exports")

    # Run, Stop and Open reach every tab: wired here, below all of them.
    settings_inputs = [k, lam, top_n, tau, window, min_ratio, max_new, frames, draft_keep, self_draft, commit_guard]
    cleared = {timing_plot: None, speedup_plot: None, diff_html: "", facts_md: "", race: "", round_table: "",
               lengths_plot: None, histogram_plot: None, anchor_gallery: [], heat_note: "", picked: None, exports: None}
    outputs = [state, live, live_summary, *columns.values(), stage, inspect_method, *cleared]
    shown = [live, live_summary, *columns.values(), timing_plot, speedup_plot, diff_html, facts_md, inspect_method, race,
             race_t, picked, heat_note, exports, stage]
    run_event = run_btn.click(  # multiple: a Run pressed while a stopped run winds down is not dropped
        run, [video, prompt, target, draft, *settings_inputs, palette], outputs,
        concurrency_id="model", concurrency_limit=1, api_visibility="private", trigger_mode="multiple",
    )
    shown_event = run_event.success(show, [state, palette], shown, api_visibility="private")
    stop_btn.click(  # cancels the decoding itself, and the views if it had just ended
        stopped, None, [live_summary, stage], cancels=[run_event, shown_event], queue=False,
        api_visibility="private",
    )
    saved.upload(open_saved, [saved, palette], [state, *shown, video, prompt, *settings_inputs],
                 api_visibility="private")
    palette.change(show, [state, palette], shown, api_visibility="private")
    errors_table.select(open_error, [errors_found, palette], [state, *shown, round_index], api_visibility="private")

    # Programmatic use: gradio_client.Client(url).predict(..., api_name="/generate") → RunTrace as JSON text.
    with gr.Row(visible=False):
        api_method = gr.Dropdown(list(METHODS), value="lvspec", label="method")
        api_out = gr.Textbox()
        api_btn = gr.Button()
    api_btn.click(
        api_generate, [video, prompt, api_method, target, draft, *settings_inputs], api_out,
        api_name="generate", concurrency_id="model", concurrency_limit=1,
    )


def launch(**options):
    """Serve the app: one model run at a time, a bounded queue, uploads no larger than the video limit,
    and no files served but the shipped clips and what the app itself produced or received; decoding on
    `serving_threads` unless OMP_NUM_THREADS says otherwise."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(serving.serving_threads())
    if os.environ.get("SPACES_ZERO_GPU"):  # ZeroGPU wants the models placed at start-up, not inside a GPU call
        serving.load(str(TARGET), str(DRAFT))
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return demo.launch(allowed_paths=[str(VIDEOS)], max_file_size=VideoLimits.from_env().max_bytes,
                       theme=gr.themes.Soft(), css=CSS, **options)


if __name__ == "__main__":
    launch()
