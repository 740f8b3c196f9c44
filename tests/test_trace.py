"""The RunTrace is complete, consistent with its rounds, and survives JSON."""

from __future__ import annotations

import json

from conftest import CLIPS, PROMPTS
from lvspec.decode import Settings, generate, stream
from lvspec.text import Detokenizer
from lvspec.trace import VERDICTS, RunTrace


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


def test_accepted_ceiling_is_what_a_fully_accepted_draft_would_reach(pair):
    trace = generate(pair, CLIPS[0], PROMPTS[0], "exact", Settings(k=4, max_new_tokens=14))
    assert trace.committed == trace.stats.new_tokens - 1 == 13
    assert trace.fewest_passes == 3  # 13 tokens in passes of at most K + 1 = 5
    assert trace.accepted_ceiling == 13 / 3 >= trace.stats.mean_accepted_length
    vanilla = generate(pair, CLIPS[0], PROMPTS[0], "vanilla", Settings(max_new_tokens=14))
    assert vanilla.accepted_ceiling == 1.0
