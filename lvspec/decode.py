"""The one draft → verify → commit loop that every method runs.

Read top to bottom: ``prefill`` both models once (the video is encoded once per model; the draft may read
only a kept share of its tokens, and in Self-SD the target, so pruned, is its own draft), then rounds of
``draft_chain`` (K greedy draft tokens), one ``verify`` pass of the target over them, the policy's
verdicts, commit, and a roll-back of both KV caches to the committed prefix. ``stream`` yields the
growing RunTrace after every round so a UI can draw it live; ``generate`` returns the finished one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel

from .models import ModelPair, Prompt
from .policies import Exact, FLy, LVSpec, Policy, RandomRelax, RoundView, Vanilla
from .pruning import kept_tokens, prefill_signal, pruned
from .relevance import LayerTap, relevance, unit_rows
from .text import Detokenizer
from .trace import Round, RunTrace, TokenEvent
from .video import Clip


@dataclass(frozen=True)
class Settings:
    k: int = 10  # draft tokens per round
    lam: float = 0.7  # relaxation ratio: share of each round's positions treated as fillers (the paper's)
    top_n: int = 10  # video tokens averaged into a position's relevance
    tau: float | None = None  # relevance at or above which a position is always an anchor
    window: int = 3  # position-shift tolerance w (0 = off)
    min_ratio: float = 0.2  # filler guard ε: accept a loose token only if p(d) ≥ ε·p(t) (0: the paper's rule)
    layer: int | None = None  # target layer whose hidden states score relevance (None = middle)
    video_repr: str = "input"  # video vectors: "input" (after the vision merger) or "layer" (same layer)
    max_new_tokens: int = 256  # room for a detailed description (the SpecVLM scripts use 256)
    draft_keep: float = 1.0  # share of the video tokens the draft reads (below 1: pruned, as in SpecVLM)
    self_draft: bool = False  # Self-SD: the target, reading only the kept video tokens, is its own draft

    def __post_init__(self):
        if not 0.0 < self.draft_keep <= 1.0:
            raise ValueError(f"draft_keep must be in (0, 1], got {self.draft_keep}")


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
    """Wall time that waits for the accelerators, so each phase is charged its own work (every GPU a model
    spread by ``device_map`` sits on: a pass ends when its last layer does)."""

    def __init__(self, *devices: torch.device):
        self.cuda = sorted({d for d in devices if d.type == "cuda"}, key=str)

    def __call__(self) -> float:
        for device in self.cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter()


@dataclass
class Sequence:
    """One model's running copy of the answer: its KV cache and ``offset``, how far rotary positions run
    ahead of cache indices (Qwen's rope delta, plus the video tokens a pruned draft never read).

    Positions are passed on every call, so nothing rests on state kept on the model object: in Self-SD the
    full target and its pruned self are one model with two sequences.
    """

    model: PreTrainedModel
    cache: DynamicCache
    offset: int

    def __post_init__(self):
        # Steps after the prefill run the language model and its head directly: they read no pixels, and the
        # multimodal wrapper's per-call work is a fifth of a small draft's whole step on a CPU.
        self._embed = self.model.get_input_embeddings()
        self._decoder = self.model.get_decoder()
        self._head = self.model.get_output_embeddings()

    def forward(self, ids: list[int], logits_to_keep: int = 0) -> torch.Tensor:
        """Extend the cache by ``ids``; the logits (n, vocab) of the last ``logits_to_keep`` (0 = all)."""
        device = self.model.device
        start = self.cache.get_seq_length() + self.offset
        positions = torch.arange(start, start + len(ids), device=device)[None]
        embeds = self._embed(torch.tensor([ids], device=device))
        hidden = self._decoder(inputs_embeds=embeds, position_ids=positions, cache=self.cache,
                               use_cache=True).last_hidden_state
        return self._head(hidden[0, -logits_to_keep:])

    def crop(self, n: int) -> None:
        """Forget the last ``n`` tokens."""
        self.cache.crop(-n)


def prefill(model: PreTrainedModel, prompt: Prompt) -> tuple[Sequence, int]:
    """Read the prompt (video included); return the model's sequence and its greedy first token."""
    cache = DynamicCache(config=model.config)
    out = model(inputs_embeds=prompt.embeds, position_ids=prompt.positions, cache=cache, use_cache=True,
                logits_to_keep=1)
    return Sequence(model, cache, prompt.offset), int(out.logits[0, -1].argmax())


def draft_chain(draft: Sequence, pending: list[int], k: int, stop_ids: frozenset[int]) -> list[int]:
    """Feed the committed tokens the draft has not seen, then propose up to ``k`` greedy tokens.

    The last proposal is never fed back, so the draft cache grows by len(pending) + len(drafts) − 1.
    """
    drafts: list[int] = []
    ids = pending
    while len(drafts) < k:
        token = int(draft.forward(ids, logits_to_keep=1)[-1].argmax())
        drafts.append(token)
        if token in stop_ids:
            break
        ids = [token]
    return drafts


def verify(target: Sequence, ids: list[int], tap: LayerTap) -> tuple[torch.Tensor, torch.Tensor]:
    """One target pass over [last committed, d_1..d_K]: logits at every position and layer-L states."""
    logits = target.forward(ids)
    return logits.float(), tap.take()


def draft_prompt(pair: ModelPair, draft: PreTrainedModel, inputs: dict, full: Prompt, states: torch.Tensor,
                 settings: Settings) -> tuple[Prompt, int]:
    """What the draft reads, and how many video tokens of it: the whole video, or the kept share chosen by
    the target's prefill ``states`` (``lvspec.pruning``). A target drafting for itself reuses its own prompt."""
    prompt = full if draft is pair.target else pair.prompt(draft, inputs)
    mask = pair.adapter.video_mask(pair.target.config, inputs["input_ids"])
    if settings.draft_keep == 1.0:
        return prompt, int(mask.sum())
    grid = pair.adapter.video_grid(pair.target.config, inputs)
    kept = kept_tokens(prefill_signal(states, mask), grid, settings.draft_keep)
    return pruned(prompt, mask, kept), int(kept.sum())


def drafter(pair: ModelPair, settings: Settings) -> tuple[PreTrainedModel | None, str | None]:
    """The draft model and its name: the pair's draft, or in Self-SD the target itself."""
    if settings.self_draft:
        return pair.target, f"{pair.target_name} (self, {settings.draft_keep:.0%} of the video)"
    return pair.draft, pair.draft_name


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
    draft, draft_name = drafter(pair, settings)
    if policy.drafts and draft is None:
        raise ValueError(f"method '{method}' needs a draft model")
    target, stops = pair.target, pair.stop_ids
    trace = RunTrace(
        method=method,
        params=asdict(settings),
        target=pair.target_name,
        draft=draft_name if policy.drafts else None,
        prompt=prompt,
        video=clip.info(),
    )
    inputs = pair.inputs(clip, prompt)
    video_mask = pair.adapter.video_mask(target.config, inputs["input_ids"])
    trace.video["grid"] = pair.adapter.video_grid(target.config, inputs)
    layers = pair.adapter.decoder_layers(target)
    hidden_tap = LayerTap(layers, len(layers) // 2 if settings.layer is None else settings.layer)
    clock, text = Clock(*pair.devices), Detokenizer(pair.tokenizer)
    try:
        start = clock()
        full = pair.prompt(target, inputs)
        target_seq, first = prefill(target, full)
        states = hidden_tap.take()
        source = full.embeds[0] if settings.video_repr == "input" else states
        video = unit_rows(source[video_mask.to(source.device)])
        draft_seq = None
        if policy.drafts:
            reads, trace.video["draft_tokens"] = draft_prompt(pair, draft, inputs, full, states, settings)
            draft_seq = prefill(draft, reads)[0]
        trace.timing.prefill_s = clock() - start
        committed = [first]
        trace.tokens.append(TokenEvent(first, text.push(first), "target", False, None, 0))
        draft_seen = 0  # committed tokens already in the draft's cache
        tally(trace, start, clock())
        start += yield from _hand_over(trace, clock)

        while committed[-1] not in stops and len(committed) < settings.max_new_tokens:
            k = min(settings.k, settings.max_new_tokens - len(committed) - 1) if policy.drafts else 0
            t0 = clock()
            drafts = draft_chain(draft_seq, committed[draft_seen:], k, stops) if k else []
            t1 = clock()
            logits, hidden = verify(target_seq, committed[-1:] + drafts, hidden_tap)
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
            target_seq.crop(len(drafts) - n)
            if drafts:
                kept = min(n, len(drafts) - 1)
                draft_seq.crop(len(drafts) - 1 - kept)
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

        if settle_text(trace, text):
            tally(trace, start, clock())
            yield trace
    finally:
        hidden_tap.close()


def _hand_over(trace: RunTrace, clock: Clock) -> Iterator[RunTrace]:
    """Yield the growing trace; the time the consumer keeps it (a UI drawing it) is not charged to the run."""
    paused = clock()
    yield trace
    return clock() - paused


def settle_text(trace: RunTrace, text: Detokenizer) -> bool:
    """Give the last token what the detokenizer still holds back (an answer that ends inside a character),
    so the tokens' texts add up to the decoded answer; whether there was any."""
    tail = text.rest()
    if not tail or not trace.tokens:
        return False
    trace.tokens[-1].text += tail
    return True


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


def warm_up(pair: ModelPair, settings: Settings = Settings()) -> None:
    """One tiny run through every code path ``settings`` will take, so that the first timed run does not pay
    for lazy set-up (allocator growth, kernel selection, first-call imports) and look slower than later ones."""
    frames = np.zeros((2, 56, 56, 3), dtype=np.uint8)
    clip = Clip("warm-up", frames, [0, 1], 2, 2.0, (56, 56))
    drafting = pair.draft is not None or settings.self_draft
    for method in ("vanilla", "lvspec") if drafting else ("vanilla",):
        generate(pair, clip, "Warm up.", method, replace(settings, k=2, max_new_tokens=4))
