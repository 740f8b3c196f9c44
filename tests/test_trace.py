"""The RunTrace is complete, consistent with its rounds, and survives JSON; and a saved trace may come from
anyone: whatever a file holds, loading it gives RunTraces or a ValueError with the reason, and what it holds
can never become markup."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CLIPS, PROMPTS, hand_built_trace
from lvspec.decode import Settings, generate, stream
from lvspec.errors import UserError
from lvspec.text import Detokenizer
from lvspec.trace import VERDICTS, RunTrace, load_runs, save_runs
from viz.tokens import round_table_html, tokens_html


def committed_by_round(trace: RunTrace) -> list[int]:
    """Token ids rebuilt from the rounds alone: accepted drafts, then the target's token after them."""
    ids = [trace.tokens[0].id]
    for r in trace.rounds:
        n = next((i for i, v in enumerate(r.verdicts) if v not in ("exact", "loose", "shift")), len(r.verdicts))
        ids += (r.draft_ids[:n] + [r.target_ids[n]])[: r.committed]
    return ids


def test_trace_round_trips_and_tokens_match_rounds(pair):
    trace = generate(pair, CLIPS[0], PROMPTS[0], "lvspec", Settings(k=5, lam=0.7, max_new_tokens=30))
    again = RunTrace.from_json(trace.to_json())
    assert again == trace
    assert json.loads(again.to_json()) == json.loads(trace.to_json())
    assert trace.token_ids == committed_by_round(trace)
    assert {t.verdict for t in trace.tokens} <= set(VERDICTS)
    assert sum(r.committed for r in trace.rounds) + 1 == trace.stats.new_tokens == len(trace.tokens)
    assert trace.text == pair.tokenizer.decode(trace.token_ids, skip_special_tokens=True)
    t = trace.timing
    assert t.total_s >= t.prefill_s + t.draft_s + t.verify_s - 1e-9 and t.other_s >= -1e-9
    for r in trace.rounds:
        assert len(r.target_ids) == len(r.draft_ids) + 1
        assert len(r.verdicts) == len(r.anchor) == len(r.relevance) == len(r.p_draft_token) == len(r.draft_ids)
        assert len(r.why) == len(r.verdicts) and all((w == "") == (v == "skip") for v, w in zip(r.verdicts, r.why))
        for d, t_, pd, pt in zip(r.draft_ids, r.target_ids, r.p_draft_token, r.p_target_top):
            assert 0.0 <= pd <= pt + 1e-12 and (d != t_ or abs(pd - pt) < 1e-12)


def test_stream_yields_after_every_round(pair):
    seen = [len(t.tokens) for t in stream(pair, CLIPS[1], PROMPTS[2], "exact", Settings(k=3, max_new_tokens=20))]
    assert seen[0] == 1 and seen == sorted(seen) and len(seen) >= 2


def test_token_pieces_are_whole_characters(tokenizer):
    text = "Ünïcode ✓ é ß circle"
    ids = tokenizer(text)["input_ids"]
    assert len(ids) > len(text.split())  # some word is split over several tokens
    detok = Detokenizer(tokenizer)
    pieces = [detok.push(i) for i in ids]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_saved_trace_loads_from_disk(pair, tmp_path):
    trace = generate(pair, CLIPS[2], PROMPTS[1], "vanilla", Settings(max_new_tokens=8))
    trace.save(tmp_path / "t.json")
    loaded = RunTrace.load(tmp_path / "t.json")
    assert loaded == trace and loaded.stats.mean_accepted_length == 1.0
    older = trace.to_dict()
    del older["params"]["commit_guard"]  # a trace saved before the commit guard: its run had none
    assert not RunTrace.from_dict(older).params.commit_guard and trace.params.commit_guard


def test_accepted_ceiling_is_what_a_fully_accepted_draft_would_reach(pair):
    trace = generate(pair, CLIPS[0], PROMPTS[0], "exact", Settings(k=4, max_new_tokens=14))
    assert trace.committed == trace.stats.new_tokens - 1 == 13
    assert trace.fewest_passes == 3  # 13 tokens in passes of at most K + 1 = 5
    assert trace.accepted_ceiling == 13 / 3 >= trace.stats.mean_accepted_length
    vanilla = generate(pair, CLIPS[0], PROMPTS[0], "vanilla", Settings(max_new_tokens=14))
    assert vanilla.accepted_ceiling == 1.0


def good() -> dict:
    return hand_built_trace().to_dict()


def spoiled(path: str, value) -> dict:
    """The hand-built trace with one field (``a.0.b`` names nested items) replaced."""
    data = good()
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("tokens", "abc", "tokens must be a list"),
        ("tokens.0", ["not", "an", "object"], "not a TokenEvent"),
        ("tokens.1.text", 7, "TokenEvent.text has the wrong type"),
        ("tokens.1.round", '"><script>alert(1)</script>', "TokenEvent.round has the wrong type"),
        ("tokens.1.verdict", '"><img src=x onerror=alert(1)>', "verdict is not one of"),
        ("tokens.1.anchor", "yes", "TokenEvent.anchor has the wrong type"),
        ("rounds.0.anchor", [True], "lists of different lengths"),
        ("rounds.0.target_ids", [1, 2, 3], "lists of different lengths"),
        ("rounds.0.verdicts", ["exact", "exact", "<b>"], "verdict not in"),
        ("rounds.0.p_draft_token", [0.1, "0.2", 0.3], "Round.p_draft_token has the wrong type"),
        ("timing", [1, 2], "not a Timing"),
        ("stats.new_tokens", 1.5, "Stats.new_tokens has the wrong type"),
        ("vocab", {"2": 3}, "RunTrace.vocab has the wrong type"),
        ("video.grid", [10**6, 10**6, 10**6], "bounded product"),
        ("video.grid", [2, -1, 2], "bounded product"),
        ("video.path", ["/etc/passwd"], "VideoInfo.path has the wrong type"),
        ("draft", {"a": 1}, "RunTrace.draft has the wrong type"),
    ],
)
def test_malformed_traces_are_refused_with_the_reason(tmp_path, path, value, reason):
    file = tmp_path / "runs.json"
    file.write_text(json.dumps([spoiled(path, value)]))
    with pytest.raises(UserError, match=reason) as err:
        load_runs(file)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content", ["", "[]", "[1, 2]", '"text"', "null", "{}", '{"method": "x"}', "\x00\xff"])
def test_files_that_hold_no_trace_are_refused(tmp_path, content):
    file = tmp_path / "runs.json"
    file.write_text(content, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(UserError, match="runs.json"):
        load_runs(file)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(sorted(good()))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(FIELDS, JSON), max_size=3))
def test_any_json_in_any_field_loads_or_is_refused_as_a_user_error(tmp_path_factory, changes):
    data = good() | dict(changes)
    file = tmp_path_factory.mktemp("fuzz") / "runs.json"
    file.write_text(json.dumps(data))
    try:
        traces = load_runs(file)
    except UserError:
        return
    tokens_html(traces[0])  # what loads, renders
    for r in traces[0].rounds:
        round_table_html(traces[0], r.index)


def test_hostile_model_text_round_trips_and_renders_as_text(tmp_path):
    trace = hand_built_trace()
    hostile = ['<script>alert("x")</script>', "<img src=x onerror=alert(1)>", "&amp;", "\u202eevil", "👀\x00"]
    for token, text in zip(trace.tokens, hostile):
        token.text = text
    trace.vocab = {str(i): text for i, text in enumerate(hostile)}
    save_runs([trace], tmp_path / "runs.json")
    loaded = load_runs(tmp_path / "runs.json")[0]
    assert loaded == trace
    html = tokens_html(loaded) + round_table_html(loaded, 1)
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html
    assert RunTrace.from_json(loaded.to_json()) == loaded
