"""transformers' own assisted generation (``generate(assistant_model=draft)``) as a RunTrace: the peer that
a user would otherwise pick for exact-match speculative decoding, timed on the same input.

It runs outside our loop, so its trace has tokens but no rounds. Target passes are counted with a forward
hook. Its prefill is timed as the first forward pass of each model; transformers verifies the first draft
chain in the target's prefill pass, so that pass also commits tokens and counts as a target pass.

Two ways it is not our loop with another name, said under bench's table (``notes``). Its draft never sees the
video: transformers runs the assistant's ``generate`` as a continuation (``is_first_iteration=False``), which
drops every multimodal input, so the draft reads the video tokens' placeholder ids (checked per family in
tests/test_families.py). And transformers refuses a pair whose heads differ in size (a padded draft) unless
given both tokenizers, and then runs universal assisted decoding, which re-tokenizes the text every round;
it is lossless, and the path transformers offers for such pairs, so ``hf`` takes it.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from .decode import Clock, settle_text, tally
from .errors import UserError
from .models import ModelPair

# Families whose draft transformers' assisted generation runs without the video (transformers 5.24: all of them).
DRAFTS_WITHOUT_VIDEO = frozenset({"qwen2_5_vl", "qwen2_vl", "llava_onevision", "qwen3_vl", "internvl"})
from .text import Detokenizer
from .trace import RunTrace, Settings, TokenEvent
from .video import Clip


class _Passes:
    """Counts a model's forward passes and times the first one."""

    def __init__(self, model, clock: Clock):
        self.count, self.first_s, self._clock = 0, 0.0, clock
        self._handles = [model.register_forward_pre_hook(self._before), model.register_forward_hook(self._after)]

    def _before(self, module, args):
        if self.count == 0:
            self._start = self._clock()

    def _after(self, module, args, output):
        if self.count == 0:
            self.first_s = self._clock() - self._start
        self.count += 1

    def close(self) -> None:
        for h in self._handles:
            h.remove()


@contextmanager
def _fixed_chain(draft, k: int):
    """Exactly ``k`` draft tokens a round, no confidence early stop (transformers' defaults: 20 with a
    heuristic schedule that it writes back into the draft's generation config, and early stop at 0.4)."""
    config = draft.generation_config
    names = ("num_assistant_tokens", "assistant_confidence_threshold", "num_assistant_tokens_schedule")
    saved = {n: getattr(config, n, None) for n in names}
    config.num_assistant_tokens, config.assistant_confidence_threshold = k, 0.0
    config.num_assistant_tokens_schedule = "constant"
    try:
        yield
    finally:
        for n, v in saved.items():
            setattr(config, n, v)


def head_sizes(pair: ModelPair) -> tuple[int, int]:
    """Rows of the target's and the draft's heads."""
    return tuple(m.config.get_text_config().vocab_size for m in (pair.target, pair.draft))


def notes(pair: ModelPair) -> list[str]:
    """What a reader of ``hf``'s figures on this pair should know, one line each."""
    out = []
    if pair.adapter.model_type in DRAFTS_WITHOUT_VIDEO:
        out.append(f"hf: transformers' assisted generation drafts without the video for {pair.adapter.model_type} "
                   "(its draft reads the video tokens' placeholders)")
    target, draft = head_sizes(pair)
    if target != draft:
        out.append(f"hf: the heads differ in size ({target} vs {draft} rows), so transformers runs universal "
                   "assisted decoding, which re-tokenizes the text every round")
    return out


@torch.inference_mode()
def generate_assisted(pair: ModelPair, clip: Clip, prompt: str, settings: Settings = Settings()) -> RunTrace:
    if pair.draft is None:
        raise UserError("method 'hf' needs a draft model")
    trace = RunTrace("hf", settings, pair.target_name, pair.draft_name, prompt, clip.info())
    inputs = pair.inputs(clip, prompt)
    target_rows, draft_rows = head_sizes(pair)
    both = {} if target_rows == draft_rows else dict(tokenizer=pair.tokenizer, assistant_tokenizer=pair.tokenizer)
    clock = Clock(*pair.devices)
    target, draft = _Passes(pair.target, clock), _Passes(pair.draft, clock)
    try:
        with _fixed_chain(pair.draft, settings.k):
            start = clock()
            pair.reset()
            out = pair.target.generate(**inputs, assistant_model=pair.draft, do_sample=False,
                                       max_new_tokens=settings.max_new_tokens, **both)
            end = clock()
    finally:
        target.close()
        draft.close()
    text = Detokenizer(pair.tokenizer)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    for token in new:
        trace.tokens.append(TokenEvent(token, text.push(token), "target", False, None, 0))
        if token in pair.stop_ids:
            break
    settle_text(trace, text)
    trace.timing.prefill_s = target.first_s + draft.first_s
    tally(trace, start, end)
    s = trace.stats
    s.target_passes = target.count
    s.mean_accepted_length = s.new_tokens / max(1, s.target_passes)
    return trace
