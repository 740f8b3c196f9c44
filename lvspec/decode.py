"""The one draft → verify → commit loop that every method runs.

Read top to bottom: ``prefill`` both models once (the video is encoded once per model), then rounds of
``draft_chain`` (K greedy draft tokens), one ``verify`` pass of the target over them, the policy's
verdicts, commit, and a roll-back of both KV caches to the committed prefix. ``stream`` yields the
growing RunTrace after every round so a UI can draw it live; ``generate`` returns the finished one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .models import ModelPair
from .policies import Exact, FLy, LVSpec, Policy, RandomRelax, RoundView, Vanilla
from .relevance import LayerTap, relevance, unit_rows
from .text import Detokenizer
from .trace import Round, RunTrace, TokenEvent
from .video import Clip


@dataclass(frozen=True)
class Settings:
    k: int = 10  # draft tokens per round
    lam: float = 0.7  # relaxation ratio: share of each round's positions treated as fillers
    top_n: int = 10  # video tokens averaged into a position's relevance
    tau: float | None = None  # relevance at or above which a position is always an anchor
    window: int = 3  # position-shift tolerance w (0 = off)
    min_ratio: float = 0.0  # filler guard ε: accept a loose token only if p(d) ≥ ε·p(t)
    layer: int | None = None  # target layer whose hidden states score relevance (None = middle)
    video_repr: str = "input"  # video vectors: "input" (after the vision merger) or "layer" (same layer)
    max_new_tokens: int = 128


METHODS = ("vanilla", "exact", "lvspec", "fly", "random")


def make_policy(method: str, s: Settings) -> Policy:
    relax = dict(lam=s.lam, tau=s.tau, min_ratio=s.min_ratio, window=s.window)
    makers = {
        "vanilla": Vanilla,
        "exact": Exact,
        "lvspec": lambda: LVSpec(**relax),
        "fly": FLy,
        "random": lambda: RandomRelax(**relax),
    }
    if method not in makers:
        raise ValueError(f"unknown method '{method}' (choose from {', '.join(METHODS)})")
    return makers[method]()


class Clock:
    """Wall time that waits for the accelerator, so each phase is charged its own work."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def forward(model, ids: list[int], cache, logits_to_keep: int = 0) -> torch.Tensor:
    """Extend ``cache`` by ``ids`` and return the logits (n, vocab) of the last ``logits_to_keep`` (0 = all)."""
    input_ids = torch.tensor([ids], device=model.device)
    return model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=logits_to_keep).logits[0]


def prefill(model, inputs: dict) -> tuple[object, int]:
    """Encode the prompt and the video; return the cache and the greedy first token."""
    out = model(**inputs, use_cache=True, logits_to_keep=1)
    return out.cache, int(out.logits[0, -1].argmax())


def draft_chain(model, cache, pending: list[int], k: int, stop_ids: frozenset[int]) -> list[int]:
    """Feed the committed tokens the draft has not seen, then propose up to ``k`` greedy tokens.

    The last proposal is never fed back, so the draft cache grows by len(pending) + len(drafts) − 1.
    """
    drafts: list[int] = []
    ids = pending
    while len(drafts) < k:
        token = int(forward(model, ids, cache, logits_to_keep=1)[-1].argmax())
        drafts.append(token)
        if token in stop_ids:
            break
        ids = [token]
    return drafts


def verify(model, cache, ids: list[int], tap: LayerTap) -> tuple[torch.Tensor, torch.Tensor]:
    """One target pass over [last committed, d_1..d_K]: logits at every position and layer-L states."""
    logits = forward(model, ids, cache)
    return logits.float(), tap.take()


def round_view(logits: torch.Tensor, drafts: list[int], scores: list[float], stops: frozenset[int]) -> RoundView:
    """What the policy sees of a round: the target's greedy tokens and probabilities at each position."""
    probs = logits.softmax(-1)
    target_ids = logits.argmax(-1)
    top3 = probs[: len(drafts)].topk(min(3, probs.shape[-1]), dim=-1).values
    top3 = top3 / top3.sum(-1, keepdim=True)
    drafted = torch.tensor(drafts, dtype=torch.long, device=logits.device)
    return RoundView(
        draft_ids=drafts,
        target_ids=target_ids.tolist(),
        p_draft=probs[: len(drafts)].gather(-1, drafted[:, None])[:, 0].tolist(),
        p_top=probs[: len(drafts)].gather(-1, target_ids[: len(drafts), None])[:, 0].tolist(),
        relevance=scores,
        stop_ids=stops,
        entropy3=(-(top3 * top3.clamp_min(1e-12).log()).sum(-1)).tolist(),
    )


@torch.inference_mode()
def stream(pair: ModelPair, clip: Clip, prompt: str, method: str, settings: Settings = Settings()) -> Iterator[RunTrace]:
    policy = make_policy(method, settings)
    if policy.drafts and pair.draft is None:
        raise ValueError(f"method '{method}' needs a draft model")
    target, draft, stops = pair.target, pair.draft, pair.stop_ids
    trace = RunTrace(
        method=method,
        params=asdict(settings),
        target=pair.target_name,
        draft=pair.draft_name if policy.drafts else None,
        prompt=prompt,
        video=clip.info(),
    )
    inputs = pair.inputs(clip, prompt)
    video_mask = pair.adapter.video_mask(target.config, inputs["input_ids"])
    trace.video["grid"] = pair.adapter.video_grid(target.config, inputs)
    layers = pair.adapter.decoder_layers(target)
    hidden_tap = LayerTap(layers, len(layers) // 2 if settings.layer is None else settings.layer)
    video_tap = LayerTap(layers, 0) if settings.video_repr == "input" else hidden_tap
    clock, text = Clock(pair.device), Detokenizer(pair.tokenizer)
    try:
        start = clock()
        pair.reset()
        target_cache, first = prefill(target, inputs)
        states = video_tap.take()
        video = unit_rows(states[video_mask.to(states.device)])
        hidden_tap.value = None
        draft_cache = prefill(draft, inputs)[0] if policy.drafts else None
        trace.timing.prefill_s = clock() - start
        committed = [first]
        trace.tokens.append(TokenEvent(first, text.push(first), "target", False, None, 0))
        draft_seen = 0  # committed tokens already in the draft's cache
        tally(trace, start, clock())
        start += yield from _hand_over(trace, clock)

        while committed[-1] not in stops and len(committed) < settings.max_new_tokens:
            k = min(settings.k, settings.max_new_tokens - len(committed) - 1) if policy.drafts else 0
            t0 = clock()
            drafts = draft_chain(draft, draft_cache, committed[draft_seen:], k, stops) if k else []
            t1 = clock()
            logits, hidden = verify(target, target_cache, committed[-1:] + drafts, hidden_tap)
            t2 = clock()

            scores, looks = relevance(hidden[1:], video, settings.top_n)
            scores, looks = scores.tolist(), looks.tolist()
            view = round_view(logits, drafts, scores, stops)
            decision = policy.decide(view)
            n = decision.accepted
            t3 = clock()

            # Commit the accepted drafts and the target's own token after them, up to a stop token.
            last = "target" if not drafts else "bonus" if n == len(drafts) else "correction"
            new = list(zip(drafts[:n], decision.verdicts[:n], decision.anchor[:n], scores[:n], looks[:n]))
            new.append((view.target_ids[n], last, n < len(drafts) and decision.anchor[n], None, None))
            index = len(trace.rounds) + 1
            added = 0
            for token, verdict, anchor, score, look in new:
                committed.append(token)
                trace.tokens.append(TokenEvent(token, text.push(token), verdict, anchor, score, index, look))
                added += 1
                if token in stops:
                    break

            # Roll both caches back to the committed prefix.
            target_cache.crop(-(len(drafts) - n))
            if drafts:
                kept = min(n, len(drafts) - 1)
                draft_cache.crop(-(len(drafts) - 1 - kept))
                draft_seen = len(committed) - added + kept

            for token in {*drafts, *view.target_ids} - set(map(int, trace.vocab)):
                trace.vocab[str(token)] = pair.tokenizer.decode([token])
            now = clock()
            trace.rounds.append(
                Round(
                    index=index,
                    draft_ids=drafts,
                    target_ids=view.target_ids,
                    p_draft_token=view.p_draft,
                    p_target_top=view.p_top,
                    relevance=scores,
                    anchor=decision.anchor,
                    verdicts=decision.verdicts,
                    committed=added,
                    draft_s=t1 - t0,
                    verify_s=t2 - t1,
                    end_s=now - start,
                )
            )
            trace.timing.draft_s += t1 - t0
            trace.timing.verify_s += t2 - t1
            trace.timing.identify_s += t3 - t2
            tally(trace, start, now)
            start += yield from _hand_over(trace, clock)
    finally:
        hidden_tap.close()
        video_tap.close()


def _hand_over(trace: RunTrace, clock: Clock) -> Iterator[RunTrace]:
    """Yield the growing trace; the time the consumer keeps it (a UI drawing it) is not charged to the run."""
    paused = clock()
    yield trace
    return clock() - paused


def tally(trace: RunTrace, start: float, now: float) -> None:
    """Bring the trace's text, timing and statistics up to ``now`` (``start``: the run's first moment)."""
    t, s = trace.timing, trace.stats
    t.total_s = now - start
    t.other_s = t.total_s - t.prefill_s - t.draft_s - t.verify_s - t.identify_s
    trace.text = "".join(tok.text for tok in trace.tokens)
    s.new_tokens = len(trace.tokens)
    s.target_passes = len(trace.rounds)
    s.mean_accepted_length = sum(r.committed for r in trace.rounds) / max(1, len(trace.rounds))
    decode_s = t.total_s - t.prefill_s
    s.tokens_per_s = (s.new_tokens - 1) / decode_s if decode_s > 0 else 0.0


def generate(pair: ModelPair, clip: Clip, prompt: str, method: str, settings: Settings = Settings()) -> RunTrace:
    trace = None
    for trace in stream(pair, clip, prompt, method, settings):
        pass
    return trace


def warm_up(pair: ModelPair) -> None:
    """One tiny run through every code path, so that the first timed run does not pay for lazy set-up
    (allocator growth, kernel selection, first-call imports) and look slower than those after it."""
    frames = np.zeros((2, 56, 56, 3), dtype=np.uint8)
    clip = Clip("warm-up", frames, [0, 1], 2, 2.0, (56, 56))
    for method in ("vanilla", "lvspec") if pair.draft is not None else ("vanilla",):
        generate(pair, clip, "Warm up.", method, Settings(k=2, max_new_tokens=4))
