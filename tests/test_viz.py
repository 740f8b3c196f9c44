"""viz renders hand-built RunTraces faithfully: one span per token, escaped text, the right chart values."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

import viz
from lvspec.trace import PHASES, VERDICTS, Round, RunTrace, Settings, Stats, Timing, TokenEvent, VideoInfo
from viz.charts import acceptance_counts, round_lengths, timing_rows
from viz.tokens import TEXT_COLOUR

K = 4
TEXT = {
    10: "The",
    11: " red",
    12: " <script>alert(1)</script>",
    13: ' "quotes"',
    22: " <b>bold</b>",
    24: " & more",
    31: "\n",
    32: "",
    33: " x",
    34: " y",
    35: " z",
    51: " a",
    61: " b",
    62: " c",
}


def decode(token_id: int) -> str:
    return TEXT.get(token_id, f" w{token_id}")


def params(**extra) -> Settings:
    return Settings(**dict(k=K, min_ratio=0.0, max_new_tokens=32) | extra)


def rnd(index, drafts, targets, verdicts, anchor, p_draft, p_top, committed, draft_s=0.04, verify_s=0.1) -> Round:
    return Round(index, drafts, targets, p_draft, p_top, [0.8, 0.1, 0.7, 0.9][: len(drafts)], anchor, verdicts,
                 committed, draft_s, verify_s)


def tok(token_id: int, verdict: str, round_: int, anchor: bool = False, relevance: float | None = None) -> TokenEvent:
    return TokenEvent(token_id, TEXT[token_id], verdict, anchor, relevance, round_)


def lvspec_trace(**extra) -> RunTrace:
    rounds = [
        rnd(1, [11, 12, 13, 14], [11, 22, 13, 24, 25], ["exact", "loose", "exact", "reject"],
            [True, False, True, True], [0.9, 0.2, 0.8, 0.05], [0.9, 0.6, 0.8, 0.7], 4),
        rnd(2, [31, 32, 33, 34], [31, 32, 33, 34, 35], ["exact"] * 4, [False] * 4, [0.5] * 4, [0.5] * 4, 5),
        rnd(3, [41, 42, 43, 44], [51, 42, 43, 44, 45], ["reject", "skip", "skip", "skip"], [True] * 4,
            [0.1] * 4, [0.7] * 4, 1),
        rnd(4, [61, 62, 63, 64], [62, 61, 63, 64, 65], ["shift", "reject", "skip", "skip"], [False] * 4,
            [0.3] * 4, [0.4] * 4, 2),
    ]
    tokens = [
        tok(10, "target", 0),
        tok(11, "exact", 1, True, 0.8), tok(12, "loose", 1, False, 0.1), tok(13, "exact", 1, True, 0.7),
        tok(24, "correction", 1, True),
        tok(31, "exact", 2, relevance=0.8), tok(32, "exact", 2, relevance=0.1), tok(33, "exact", 2, relevance=0.7),
        tok(34, "exact", 2, relevance=0.9), tok(35, "bonus", 2),
        tok(51, "correction", 3, True),
        tok(62, "shift", 4, relevance=0.8), tok(61, "correction", 4),
    ]
    return RunTrace(
        method="lvspec", params=params(**extra), target="t", draft="d", prompt="Describe.", video=VideoInfo(),
        text="".join(t.text for t in tokens), tokens=tokens, rounds=rounds,
        timing=Timing(prefill_s=0.6, draft_s=0.3, verify_s=0.5, other_s=0.1, total_s=1.5),
        stats=Stats(new_tokens=13, target_passes=4, mean_accepted_length=3.0, tokens_per_s=12 / 0.9),
    )


def vanilla_trace() -> RunTrace:
    tokens = [tok(10, "target", 0), tok(11, "target", 1), tok(13, "target", 2)]
    rounds = [rnd(i, [], [t], [], [], [], [], 1, draft_s=0.0, verify_s=0.2) for i, t in ((1, 11), (2, 13))]
    return RunTrace(
        method="vanilla", params=params(), target="t", draft=None, prompt="Describe.", video=VideoInfo(), tokens=tokens,
        rounds=rounds, timing=Timing(prefill_s=0.5, draft_s=0.0, verify_s=2.0, other_s=0.5, total_s=3.0),
        stats=Stats(new_tokens=3, target_passes=2, mean_accepted_length=1.0, tokens_per_s=2 / 2.5),
    )


class Spans(HTMLParser):
    """The attributes of every token span, in document order."""

    def __init__(self, html: str):
        super().__init__()
        self.spans: list[dict[str, str]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "span" and "tok" in attrs.get("class", "").split():
            self.spans.append(attrs)


def test_one_span_per_token_with_verdict_and_anchor_classes():
    trace = lvspec_trace()
    spans = Spans(viz.tokens_html(trace, id_to_text=decode)).spans
    assert len(spans) == len(trace.tokens)
    for i, (span, token) in enumerate(zip(spans, trace.tokens)):
        classes = span["class"].split()
        assert f"v-{token.verdict}" in classes and [c for c in classes if c.startswith("v-")] == [f"v-{token.verdict}"]
        assert ("anchor" in classes) == token.anchor
        assert span["data-round"] == str(token.round) and span["data-i"] == str(i)


def test_tooltips_give_round_probability_and_the_targets_choice():
    titles = [s["title"] for s in Spans(viz.tokens_html(lvspec_trace(), id_to_text=decode)).spans]
    loose, correction, bonus = titles[2], titles[4], titles[9]
    assert "round 1" in loose and "loose" in loose and "relevance 0.100" in loose
    assert "p(this token) 0.200" in loose and "“ <b>bold</b>” (p 0.600)" in loose
    assert "p(this token) 0.700" in correction and "this token" in correction and "relevance —" in correction
    assert "round 2" in bonus and "p(this token) —" in bonus
    assert "round 0 (prefill)" in titles[0] and "filler" not in titles[0] and "correction · anchor" in correction
    assert "#22" in Spans(viz.tokens_html(lvspec_trace())).spans[2]["title"]  # no decoder: the id


def test_model_text_is_escaped_everywhere():
    trace = lvspec_trace()
    outputs = [
        viz.tokens_html(trace, id_to_text=decode),
        viz.round_table_html(trace, 1, id_to_text=decode),
        viz.word_diff_html("a <script>alert(1)</script>", 'b "quotes" & <b>x</b>'),
    ]
    for html in outputs:
        assert "<script" not in html and "<b>" not in html
    tokens = outputs[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in tokens
    assert "&quot;quotes&quot;" in tokens and "&amp; more" in tokens
    assert "<ins>&quot;quotes&quot;</ins> <ins>&amp;</ins> <ins>&lt;b&gt;x&lt;/b&gt;</ins>" in outputs[2]


def test_newlines_and_empty_tokens_stay_visible():
    html = viz.tokens_html(lvspec_trace())
    assert "↵</span><br>" in html
    empty = Spans(html).spans[6]
    assert "empty" in empty["class"].split() and "<style>" in html


def test_palettes_cover_every_verdict_and_keep_dark_text_readable():
    def luminance(hex_colour: str) -> float:
        rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    assert set(viz.PALETTES) == {"default", "colourblind"}
    for colours in viz.PALETTES.values():
        assert set(colours) == set(VERDICTS) | {"reject", "skip"}
        for c in colours.values():
            assert (luminance(c) + 0.05) / (luminance(TEXT_COLOUR) + 0.05) >= 4.5
    cb = viz.tokens_html(lvspec_trace(), palette="colourblind")
    assert f".lvs-colourblind .v-exact{{background:{viz.PALETTES['colourblind']['exact']}}}" in cb
    legend = viz.legend_html("colourblind")
    assert all(f"v-{v}" in legend for v in VERDICTS) and "anchor" in legend


def test_round_table_marks_where_exact_match_would_stop():
    table = viz.round_table_html(lvspec_trace(tau=0.5), 1, id_to_text=decode)
    assert '<th class="stop" data-round="1" data-pos="1">2</th>' in table and table.count("stops here") == 1
    assert table.count(">accept<") == 1 and "stop at position 2" in table
    assert "0.800 ≥ τ" in table and "0.100 &lt; τ" in table
    assert '<td class="v-loose stop" data-round="1" data-pos="1">loose</td>' in table and "“ red”" in table
    picked = viz.round_table_html(lvspec_trace(tau=0.5), 1, id_to_text=decode, picked=0)
    assert len(re.findall(r'class="[^"]*picked" data-round="1" data-pos="0"', picked)) == picked.count("<tr>")
    tokens = viz.tokens_html(lvspec_trace(), picked=(1, 1))
    assert tokens.count(" picked") == 1 and 'data-method="lvspec"' in tokens
    assert "<th>why</th>" not in table  # a trace without the verdicts' rules: no empty row
    with_why = lvspec_trace(tau=0.5)
    with_why.rounds[0].why = ["match", "filler kept"] + [""] * (len(with_why.rounds[0].draft_ids) - 2)
    shown = viz.round_table_html(with_why, 1, id_to_text=decode)
    assert "<th>why</th>" in shown and ">filler kept</td>" in shown
    full = viz.round_table_html(lvspec_trace(), 2)
    assert "stops here" not in full and "accept all" in full and "τ" not in full
    assert "no draft" in viz.round_table_html(vanilla_trace(), 1)
    with pytest.raises(ValueError):
        viz.round_table_html(lvspec_trace(), 9)


def test_word_diff_on_a_known_pair():
    diff = viz.word_diff("the red circle moves left", "the blue circle moves slowly left")
    assert diff == [
        ("the", "equal"), ("red", "delete"), ("blue", "insert"), ("circle", "equal"), ("moves", "equal"),
        ("slowly", "insert"), ("left", "equal"),
    ]
    html = viz.word_diff_html("the red circle", "the blue circle")
    assert "<del>red</del>" in html and "<ins>blue</ins>" in html


def test_verdict_counts():
    assert viz.verdict_counts(lvspec_trace()) == dict(target=1, exact=6, loose=1, shift=1, correction=3, bonus=1)


def test_timing_figure_bars_are_the_timing_fields_with_speedup():
    lv, va = lvspec_trace(), vanilla_trace()
    fig = viz.timing_figure([va, lv])
    assert [bar.name for bar in fig.data] == list(PHASES)
    for bar in fig.data:
        assert list(bar.y) == ["vanilla", "lvspec"]
        assert list(bar.x) == [getattr(va.timing, f"{bar.name}_s"), getattr(lv.timing, f"{bar.name}_s")]
    notes = [a.text for a in fig.layout.annotations]
    # per decoded token, as bench measures it: 12 tokens in 0.9 s against vanilla's 2 in 2.5 s
    wall = va.timing.total_s / lv.timing.total_s  # the whole run: prefill included, answers of other lengths
    assert "1.00× per token, 1.00× wall" in notes[0] and f"16.67× per token, {wall:.2f}× wall" in notes[1]
    assert "E[T] 3.00" in notes[1] and "per token" in fig.layout.title.subtitle.text
    assert fig.layout.height and fig.layout.title.text
    alone = timing_rows([lv, lvspec_trace()])
    assert [r.label for r in alone] == ["lvspec #1", "lvspec #2"] and alone[0].speedup is None
    assert "×" not in viz.timing_figure([lv]).layout.annotations[0].text  # no vanilla: no speedup to claim


def test_accepted_length_per_round_and_mean_line():
    fig = viz.accepted_length_figure(lvspec_trace())
    bars = {bar.name: dict(zip(bar.x, bar.y)) for bar in fig.data}
    assert bars == {"ended with correction": {1: 4, 3: 1, 4: 2}, "ended with bonus": {2: 5}}
    assert [s.y0 for s in fig.layout.shapes] == [3.0] and round_lengths(lvspec_trace()).mean == 3.0
    assert fig.layout.height and "E[T] = 3.00" in fig.layout.title.text


def test_acceptance_histogram_has_k_plus_one_buckets():
    fig = viz.acceptance_histogram(lvspec_trace())
    assert list(fig.data[0].x) == list(range(K + 1)) and list(fig.data[0].y) == [1, 1, 0, 1, 1]
    assert acceptance_counts(vanilla_trace()).counts == [2] + [0] * K


def test_speedup_curve_and_step_cost_ratio():
    k, c = 4, 0.1
    fig = viz.speedup_curve_figure({"lvspec": (3.0, 2.1), "exact": (2.0, 1.4)}, k, c)
    model, ceiling, measured = fig.data
    assert model.x[0] == 1 and model.x[-1] == k + 1 and model.y[-1] == pytest.approx((k + 1) / (1 + k * c))
    assert model.y[0] == pytest.approx(1 / 1.4)
    assert list(ceiling.y) == pytest.approx([5 / 1.4] * 2) and ceiling.line.dash == "dash"
    assert list(measured.text) == ["lvspec", "exact"] and list(measured.x) == [3.0, 2.0]
    assert fig.layout.height and fig.layout.title.text
    assert viz.step_cost_ratio([vanilla_trace(), lvspec_trace()]) == pytest.approx(0.01 / 0.2)
    with pytest.raises(ValueError):
        viz.step_cost_ratio([lvspec_trace()])


def test_export_writes_every_figure(tmp_path: Path):
    lv, va = lvspec_trace(), vanilla_trace()
    files = {
        "timing.png": lambda p: viz.save_timing([va, lv], p),
        "rounds.png": lambda p: viz.save_accepted_length(lv, p, palette="colourblind"),
        "histogram.png": lambda p: viz.save_acceptance_histogram(lv, p),
        "speedup.svg": lambda p: viz.save_speedup_curve({"lvspec": (3.0, 2.1)}, 4, 0.1, p),
    }
    for name, save in files.items():
        save(tmp_path / name)
    for name in files:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") if name.endswith(".png") else b"<svg" in data


def test_viz_never_imports_gradio():
    for path in Path(viz.__file__).parent.glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+gradio", path.read_text(), re.MULTILINE), path


# ---- replay (race) and where a token looks (anchors) ----


def with_round_ends(trace: RunTrace, ends: list[float]) -> RunTrace:
    for r, end in zip(trace.rounds, ends):
        r.end_s = end
    return trace


def test_race_shows_what_each_run_had_committed_at_a_time():
    from viz.race import at, commit_times, moments, next_moment, race_html

    trace = with_round_ends(lvspec_trace(), [0.8, 1.0, 1.2, 1.4])
    assert commit_times(trace) == [0.6] + [0.8] * 4 + [1.0] * 5 + [1.2] + [1.4] * 2
    assert at(trace, 0.5).tokens == []
    assert [t.id for t in at(trace, 0.9).tokens] == [10, 11, 12, 13, 24]
    assert at(trace, 0.9).text == "".join(TEXT[i] for i in (10, 11, 12, 13, 24))
    assert len(at(trace, 0.9).rounds) == 1 and len(at(trace, 9).tokens) == len(trace.tokens)
    assert moments([trace]) == [0.6, 0.8, 1.0, 1.2, 1.4]
    assert next_moment([trace], 0.8) == 1.0 and next_moment([trace], 1.4) == trace.timing.total_s
    html = race_html([trace], 0.9)
    assert html.count('class="lane"') == 1 and html.count('class="tok ') == 5
    assert "decoding" in html and "finished" in race_html([trace], 2.0)


def test_race_marks_who_is_ahead_by_share_of_its_own_answer_and_steps_by_round_or_token():
    from viz.race import leader, next_moment, next_round, race_html

    lv = with_round_ends(lvspec_trace(), [0.8, 1.0, 1.2, 1.4])
    va = vanilla_trace()
    va.timing.prefill_s = 0.6
    va.rounds = []
    va.tokens = va.tokens[:1]  # vanilla's whole answer: the prefill's token at 0.6 s
    assert leader([lv, va], 0.5) is None  # nothing committed yet: nobody ahead
    assert leader([lv, va], 0.7) == 1  # vanilla has 1 of 1, LVSpec 1 of 13
    assert "▶ ahead" in race_html([lv, va], 0.7).split('class="lane"')[2]
    assert next_round([va, lv], 0.8) == 1.0  # LVSpec's (the drafting run's) next target pass
    assert next_moment([va, lv], 0.5) == 0.6  # the next token of any run


def test_heat_weights_rank_and_overlays_cover_only_time_steps_looked_at():
    import numpy as np

    from viz.anchors import heat, overlays

    grid = [3, 2, 2]  # 3 time steps of 2×2 video tokens
    weights = heat([5, 0, 5], grid)  # token 5 = time step 1, row 0, column 1
    assert weights.shape == (3, 2, 2) and weights[1, 0, 1] == 1.0
    assert weights[0, 0, 0] == pytest.approx(2 / 4) and weights[2].sum() == 0
    frames = np.full((6, 56, 56, 3), 200, dtype=np.uint8)
    images = overlays([5, 0], grid, frames)
    assert [caption for _, caption in images] == ["frames 1–2: 1/2", "frames 3–4: 1/2"]  # in time order
    hot = images[1][0]  # a spotlight: the looked-at cell keeps the frame's colour, the rest is dimmed
    assert (hot[:28, 28:] == 200).all() and hot[28:, :].max() <= 200 * 0.25 + 1
    assert overlays([5], grid)[0][0].shape == (56, 56, 3)  # no frames: grey canvas, 28 px a cell
    # one frame a time step (LLaVA-OneVision's grid): token 5 is on the second frame
    assert overlays([5], grid, frames[:3])[0][1].startswith("frame 2:")
    with pytest.raises(ValueError, match="outside"):
        heat([12], grid)


def sweep_result() -> dict:
    def config(method, lam=0.7, window=3):
        return {"method": method, "lam": lam, "window": window, "min_ratio": 0.2, "tau": None}

    configs = {"vanilla": config("vanilla"), "exact": config("exact"), "fly": config("fly"),
               "lvspec λ=0.9 w=3": config("lvspec", 0.9), "lvspec λ=0.3 w=3": config("lvspec", 0.3),
               "lvspec λ=0.3 w=0": config("lvspec", 0.3, 0), "random λ=0.3 w=3": config("random", 0.3)}
    speed = {"vanilla": 1.0, "exact": 1.5, "fly": 1.7, "lvspec λ=0.9 w=3": 2.6, "lvspec λ=0.3 w=3": 2.0,
             "lvspec λ=0.3 w=0": 1.8, "random λ=0.3 w=3": 1.9}
    return {"configs": configs, "items": [{}] * 3,
            "methods": {label: {"speedup": s, "retention": 1.0 - (s - 1) / 10} for label, s in speed.items()}}


def test_frontier_groups_configs_into_families_in_lambda_order():
    series = viz.charts.frontier_series(sweep_result())
    assert set(series) == {"vanilla", "exact", "fly", "lvspec w=3", "lvspec w=0", "random"}
    assert [name for _, _, name in series["lvspec w=3"]] == ["λ=0.3", "λ=0.9"]
    assert series["lvspec w=3"][1][:2] == (2.6, 1.0 - 0.16)
    fig = viz.frontier_figure(sweep_result())
    assert {trace.name for trace in fig.data} == set(series) and fig.layout.height
    # bench's "lvspec (paper)" (no ε guard, no τ floor) is drawn with the unguarded family, not joined to the default
    result = sweep_result()
    result["configs"]["lvspec (paper)"] = {"method": "lvspec", "lam": 0.7, "window": 3, "min_ratio": 0.0, "tau": None}
    result["methods"]["lvspec (paper)"] = {"speedup": 2.7, "retention": 0.8}
    assert viz.charts.frontier_series(result)["lvspec w=3 unguarded"] == [(2.7, 0.8, "λ=0.7")]


def test_frontier_labels_skip_a_point_that_would_print_over_another():
    """Speeds span 1.0–2.6, so points within 0.128× and 1.5 retention points of a labelled one go unlabelled;
    in the chart they keep their name on hover."""
    result = sweep_result()
    result["configs"]["lvspec λ=0.5 w=3"] = {"method": "lvspec", "lam": 0.5, "window": 3, "min_ratio": 0.2}
    result["methods"]["lvspec λ=0.5 w=3"] = {"speedup": 2.05, "retention": 0.9}  # beside λ=0.3's (2.0, 0.9)
    labels = viz.charts.frontier_labels(viz.charts.frontier_series(result))
    assert labels["lvspec w=3"] == ["λ=0.3", "", "λ=0.9"]
    assert labels["random"] == [""]  # (1.9, 91%): 0.1× and 1 point from lvspec's λ=0.3
    assert labels["fly"] == ["fly"] and labels["vanilla"] == ["vanilla"]
    lvspec = next(t for t in viz.frontier_figure(result).data if t.name == "lvspec w=3")
    assert list(lvspec.text) == ["λ=0.3", "", "λ=0.9"] and list(lvspec.customdata) == ["λ=0.3", "λ=0.5", "λ=0.9"]


def test_bench_figure_exports_png(tmp_path):
    viz.save_bench_figure(sweep_result(), tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_with_guards_sets_the_papers_rule_beside_them_as_its_own_family():
    from lvspec.bench import sweep_configs

    configs = sweep_configs(Settings(min_ratio=0.2, tau=0.6))
    bare = {label: s for label, (m, s) in configs.items() if label.endswith("unguarded")}
    assert len(bare) == 5 and all(s.tau is None and s.min_ratio == 0 and s.window == 3 and not s.commit_guard
                                  for s in bare.values())
    paper = Settings(min_ratio=0.0, tau=None, commit_guard=False)
    assert not any(label.endswith("unguarded") for label in sweep_configs(paper))
    assert sum(label.endswith("unguarded") for label in sweep_configs(replace(paper, commit_guard=True))) == 5
    result = sweep_result()
    for config in result["configs"].values():
        config["min_ratio"] = 0.2
    result["configs"]["lvspec λ=0.9 w=3 unguarded"] = {"method": "lvspec", "lam": 0.9, "window": 3, "min_ratio": 0.0}
    result["methods"]["lvspec λ=0.9 w=3 unguarded"] = {"speedup": 2.7, "retention": 0.8}
    series = viz.charts.frontier_series(result)
    assert series["lvspec w=3 unguarded"] == [(2.7, 0.8, "λ=0.9")]
    assert [name for _, _, name in series["lvspec w=3"]] == ["λ=0.3", "λ=0.9"]


def test_counts_are_drawn_on_whole_ticks_and_every_drafted_position_of_a_round_can_be_inspected():
    trace = lvspec_trace()
    for axis in (viz.accepted_length_figure(trace).layout.xaxis, viz.acceptance_histogram(trace).layout.yaxis):
        assert axis.tickformat == "d" and axis.dtick >= 1 and float(axis.dtick).is_integer()
    trace.vocab["14"] = ""  # a drafted end-of-answer token decodes to nothing
    positions = viz.drafted_positions(trace, 1)
    assert [pos for _, pos in positions] == [0, 1, 2, 3]  # the rejected fourth draft too
    assert positions[1][0].startswith("d2 “") and "· loose · filler ·" in positions[1][0]
    assert "“end of answer” · reject" in positions[3][0]


def test_words_the_clip_contradicts_are_marked_in_the_token_stream():
    import re

    marked = re.findall(r'<span class="[^"]* false"[^>]*data-i="(\d+)"', viz.tokens_html(lvspec_trace(), false={2}))
    assert marked == ["2"] and not re.search(r'class="[^"]* false"', viz.tokens_html(lvspec_trace()))
