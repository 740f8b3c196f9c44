"""The one draft → verify → decide → commit → roll back → record loop that every method runs.

Read ``stream`` top to bottom: the pair reads the request once, both models prefill (the video is encoded
once per model; a draft may read only a kept share of its tokens, and in Self-SD the target, so pruned, is
its own draft), then each round the drafter proposes up to K tokens, one ``verify`` pass of the target
scores them, the policy decides, the accepted tokens are committed and both sequences are cropped back to
the committed answer. ``stream`` yields the growing RunTrace after every round so a UI can draw it live;
``generate`` returns the finished one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel

from .errors import UserError
from .models import ModelPair, Prompt, Reading
from .multiple_choice import option_token_ids
from .policies import Exact, FLy, LVSpec, Policy, RandomRelax, RoundView, Vanilla
from .pruning import kept_tokens, prefill_signal, pruned, regrid
from .relevance import LayerTap, relevance, unit_rows
from .text import Detokenizer
from .trace import Round, RunTrace, Settings, TokenEvent
from .video import Clip

METHODS = ("vanilla", "exact", "lvspec", "fly", "random")


def make_policy(method: str, s: Settings) -> Policy:
    relax = dict(lam=s.lam, tau=s.tau, min_ratio=s.min_ratio, window=s.window, commit_guard=s.commit_guard)
    makers = {
        "vanilla": Vanilla,
        "exact": Exact,
        "lvspec": lambda: LVSpec(**relax),
        "fly": FLy,
        "random": lambda: RandomRelax(**relax),
    }
    if method not in makers:
        raise UserError(f"unknown method '{method}' (choose from {', '.join(METHODS)})")
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
    """One model's running copy of the answer: its KV cache, the answer ``tokens`` the cache holds after the
    prompt, ``offset``, how far rotary positions run ahead of cache indices (Qwen's rope delta, plus the
    video tokens a pruned draft never read), and ``vocab``, the ids its logits cover (``ModelPair.vocab``:
    a padded head's extra rows are cut off, so no argmax can reach them).

    Positions are passed on every call, so nothing rests on state kept on the model object: in Self-SD the
    full target and its pruned self are one model with two sequences.
    """

    model: PreTrainedModel
    cache: DynamicCache
    offset: int
    vocab: int
    tokens: list[int] = field(default_factory=list)

    def __post_init__(self):
        # Every pass runs the language model and its head directly: the prompt comes as vectors, later steps
        # read no pixels, and the multimodal wrapper's per-call work is a fifth of a small draft's whole step
        # on a CPU.
        self._embed = self.model.get_input_embeddings()
        self._decoder = self.model.get_decoder()
        self._head = self.model.get_output_embeddings()

    def read(self, embeds: torch.Tensor, positions: torch.Tensor, logits_to_keep: int = 0, **inputs) -> torch.Tensor:
        """Extend the cache by ``embeds`` at ``positions`` (``inputs``: whatever else the language model
        reads, e.g. Qwen3-VL's DeepStack features); the logits (n, vocab) of the last ``logits_to_keep``
        (0 = all)."""
        hidden = self._decoder(inputs_embeds=embeds, position_ids=positions, cache=self.cache, use_cache=True,
                               **inputs).last_hidden_state
        return self._head(hidden[0, -logits_to_keep:])[:, : self.vocab]

    def forward(self, ids: list[int], logits_to_keep: int = 0) -> torch.Tensor:
        """Extend the cache by ``ids``; the logits (n, vocab) of the last ``logits_to_keep`` (0 = all)."""
        device = self.model.device
        start = self.cache.get_seq_length() + self.offset
        positions = torch.arange(start, start + len(ids), device=device)[None]
        logits = self.read(self._embed(torch.tensor([ids], device=device)), positions, logits_to_keep)
        self.tokens += ids
        return logits

    def unseen(self, committed: list[int]) -> list[int]:
        """The committed tokens this sequence has not read yet."""
        return committed[len(self.tokens) :]

    def rollback(self, committed: list[int]) -> None:
        """Crop the cache to the longest start of the answer it holds that was committed."""
        keep = next((i for i, (a, b) in enumerate(zip(self.tokens, committed)) if a != b),
                    min(len(self.tokens), len(committed)))
        self.cache.crop(keep - len(self.tokens))
        del self.tokens[keep:]


def prefill(model: PreTrainedModel, prompt: Prompt, vocab: int) -> tuple[Sequence, int]:
    """Read the prompt (video included); return the model's sequence and its greedy first token among the
    first ``vocab`` ids."""
    seq = Sequence(model, DynamicCache(config=model.config), prompt.offset, vocab)
    logits = seq.read(prompt.embeds, prompt.positions, 1, **prompt.decoder_inputs())
    return seq, int(logits[-1].argmax())


def verify(target: Sequence, committed: list[int], drafts: list[int], tap: LayerTap) -> tuple[torch.Tensor, torch.Tensor]:
    """One target pass over [last committed, d_1..d_K]: logits and layer-L states at those K + 1 positions."""
    logits = target.forward(target.unseen(committed) + drafts)
    return logits.float(), tap.take()


def draft_prompt(pair: ModelPair, model: PreTrainedModel, reading: Reading, states: torch.Tensor | None,
                 keep: float) -> tuple[Prompt, int]:
    """What a drafting ``model`` reads, and how many video tokens of it: the whole video, or the ``keep``
    share chosen by the target's prefill ``states`` (``lvspec.pruning``), carried over to the draft's grid
    where it reads frames at another size. The target drafting for itself reuses its own prompt."""
    if model is pair.target:
        inputs, prompt, mask = reading.inputs, reading.prompt, reading.video_mask
    else:
        inputs = reading.inputs if reading.draft_inputs is None else reading.draft_inputs
        prompt, mask = pair.prompt(model, inputs), pair.adapter.video_mask(model.config, inputs["input_ids"])
    if keep == 1.0:
        return prompt, int(mask.sum())
    grid = pair.adapter.video_grid(model.config, inputs)
    kept = kept_tokens(regrid(prefill_signal(states, reading.video_mask), reading.grid, grid), grid, keep)
    return pruned(prompt, mask, kept), int(kept.sum())


class NoDraft:
    """Vanilla decoding: nothing is drafted, so every round is one target token."""

    name: str | None = None

    def start(self, reading: Reading, states: torch.Tensor) -> int | None:
        return None

    def propose(self, committed: list[int], k: int, stops: frozenset[int]) -> list[int]:
        return []

    def rollback(self, committed: list[int]) -> None:
        pass


@dataclass
class ModelDraft(NoDraft):
    """A model that proposes greedy tokens: the pair's draft, or in Self-SD the target itself, reading the
    whole video or the ``keep`` share of it."""

    pair: ModelPair
    model: PreTrainedModel
    name: str
    keep: float = 1.0
    seq: Sequence | None = None

    def start(self, reading: Reading, states: torch.Tensor) -> int:
        """Prefill; how many video tokens the draft read."""
        prompt, n_video = draft_prompt(self.pair, self.model, reading, states, self.keep)
        self.seq = prefill(self.model, prompt, self.pair.vocab)[0]
        return n_video

    def propose(self, committed: list[int], k: int, stops: frozenset[int]) -> list[int]:
        """Read the committed tokens not seen yet, then up to ``k`` greedy tokens; the last is never fed back."""
        drafts: list[int] = []
        ids = self.seq.unseen(committed)
        while len(drafts) < k:
            drafts.append(int(self.seq.forward(ids, logits_to_keep=1)[-1].argmax()))
            if drafts[-1] in stops:
                break
            ids = drafts[-1:]
        return drafts

    def rollback(self, committed: list[int]) -> None:
        self.seq.rollback(committed)


def make_drafter(pair: ModelPair, policy: Policy, s: Settings) -> NoDraft:
    """Who drafts for ``policy``: nobody, the pair's draft, or (Self-SD) the target reading a kept share."""
    if not policy.drafts:
        return NoDraft()
    if s.self_draft:
        return ModelDraft(pair, pair.target, f"{pair.target_name} (self, {s.draft_keep:.0%} of the video)", s.draft_keep)
    if pair.draft is None:
        raise UserError("this method drafts, and the loaded pair has no draft model")
    return ModelDraft(pair, pair.draft, pair.draft_name, s.draft_keep)


def round_view(logits: torch.Tensor, drafts: list[int], scores: list[float], strict: frozenset[int]) -> RoundView:
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
        strict_ids=strict,
        entropy3=(-(top3 * top3.clamp_min(1e-12).log()).sum(-1)).tolist(),
    )


@torch.inference_mode()
def stream(pair: ModelPair, clip: Clip, prompt: str, method: str, settings: Settings = Settings()) -> Iterator[RunTrace]:
    policy, stops = make_policy(method, settings), pair.stop_ids
    strict = stops | option_token_ids(pair.tokenizer, prompt)  # never relaxed (`policies`)
    drafter = make_drafter(pair, policy, settings)
    reading = pair.read(clip, prompt)
    trace = RunTrace(method, settings, pair.target_name, drafter.name, prompt, clip.info())
    trace.video.grid = reading.grid
    layers = pair.adapter.decoder_layers(pair.target)
    tap = LayerTap(layers, len(layers) // 2 if settings.layer is None else settings.layer)
    clock, text = Clock(*pair.devices), Detokenizer(pair.tokenizer)
    try:
        start = clock()
        target, first = prefill(pair.target, reading.prompt, pair.vocab)
        states = tap.take()
        video = video_vectors(reading, states, settings.video_repr)
        trace.video.draft_tokens = drafter.start(reading, states)
        trace.timing.prefill_s = clock() - start
        committed = [first]
        trace.tokens.append(TokenEvent(first, text.push(first), "target", False, None, 0))
        tally(trace, start, clock())
        start += yield from _hand_over(trace, clock)

        while committed[-1] not in stops and len(committed) < settings.max_new_tokens:
            t0 = clock()
            drafts = drafter.propose(committed, min(settings.k, settings.max_new_tokens - len(committed) - 1), stops)
            t1 = clock()
            logits, hidden = verify(target, committed, drafts, tap)
            t2 = clock()
            scores, looks = (x.tolist() for x in relevance(hidden[1:], video, settings.top_n))
            view = round_view(logits, drafts, scores, strict)
            decision = policy.decide(view)
            t3 = clock()
            events = commit(committed, view, decision, len(trace.rounds) + 1, text, stops)
            target.rollback(committed)
            drafter.rollback(committed)
            record(trace, view, decision, looks, events, pair.tokenizer, (t0, t1, t2, t3, clock()), start)
            start += yield from _hand_over(trace, clock)

        if settle_text(trace, text):
            tally(trace, start, clock())
            yield trace
    finally:
        tap.close()


def video_vectors(reading: Reading, states: torch.Tensor, source: str) -> torch.Tensor:
    """Unit vectors of the video tokens that relevance compares answer states with: the decoder's inputs
    (``"input"``, after the vision merger) or the target's states at the relevance layer (``"layer"``)."""
    rows = reading.prompt.embeds[0] if source == "input" else states
    return unit_rows(rows[reading.video_mask.to(rows.device)])


def commit(committed: list[int], view: RoundView, decision, index: int, text: Detokenizer,
           stops: frozenset[int]) -> list[TokenEvent]:
    """Append the accepted drafts and the target's own token after them (up to a stop token) to
    ``committed``; the events of the tokens added."""
    n, drafts = decision.accepted, view.draft_ids
    last = "target" if not drafts else "bonus" if n == len(drafts) else "correction"
    rows = list(zip(drafts[:n], decision.verdicts[:n], decision.anchor[:n], view.relevance[:n]))
    rows.append((view.target_ids[n], last, n < len(drafts) and decision.anchor[n], None))
    events = []
    for token, verdict, anchor, score in rows:
        committed.append(token)
        events.append(TokenEvent(token, text.push(token), verdict, anchor, score, index))
        if token in stops:
            break
    return events


def record(trace: RunTrace, view: RoundView, decision, looks: list[list[int]], events: list[TokenEvent], tokenizer,
           times: tuple[float, ...], start: float) -> None:
    """Add one round to the trace: its tokens, its Round (with where each drafted position looks), the texts
    of ids new to it, its time by phase (``times``: the round's start, then the ends of drafting, verifying,
    deciding, and all of it)."""
    t0, t1, t2, t3, now = times
    trace.tokens += events
    for token in {*view.draft_ids, *view.target_ids} - set(map(int, trace.vocab)):
        trace.vocab[str(token)] = tokenizer.decode([token])
    trace.rounds.append(Round(len(trace.rounds) + 1, view.draft_ids, view.target_ids, view.p_draft, view.p_top,
                              view.relevance, decision.anchor, decision.verdicts, len(events), t1 - t0, t2 - t1,
                              now - start, looks, decision.why))
    trace.timing.draft_s += t1 - t0
    trace.timing.verify_s += t2 - t1
    trace.timing.identify_s += t3 - t2
    tally(trace, start, now)


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
