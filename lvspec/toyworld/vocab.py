"""Offline tokenizer, processor and tiny configs in the Qwen2.5-VL format.

Everything here is saved with ``save_pretrained`` so that the embedded pair loads through exactly the
``from_pretrained(folder)`` path a real checkpoint takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoProcessor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

EOS = "<|im_end|>"
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    EOS,
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2.5-VL's chat layout, reduced to text and video parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The split rule of Qwen2's tokenizer, so that trained merges behave like a real checkpoint's.
_PRETOKENIZE = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
    r"""|\s+(?!\S)|\s+"""
)


def build_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> Qwen2Tokenizer:
    """Train a byte-level BPE on ``texts`` and wrap it as a Qwen2 tokenizer."""
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, eos_token=EOS, pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    return tokenizer


def extend_tokenizer(tokenizer: Qwen2Tokenizer, texts: Iterable[str], keep: Iterable[str]) -> Qwen2Tokenizer:
    """``tokenizer`` with merges appended so that each word of ``texts`` it splits becomes one token, except
    the words of ``keep``, whose ids stay as they are.

    New merges rank after every existing one, so they only join pieces that the old merges leave apart: text
    made of the old words keeps its ids, and a trained model keeps working once its embedding grows by the
    new rows. This is how the embedded pair learned the long-form tasks' wording,
    whose filler words the first tokenizer, trained on short answers, spelled nearly letter by letter.
    """
    backend = tokenizer.backend_tokenizer
    state = json.loads(backend.to_str())
    vocab = state["model"]["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
    known = set(merges)
    def words_of(texts: Iterable[str]) -> set[str]:
        return {w for text in texts for w, _ in backend.pre_tokenizer.pre_tokenize_str(text)}

    def pieces(word: str) -> list[str]:
        return [t.value for t in backend.model.tokenize(word)]

    kept = words_of(keep)
    # A merge joining two pieces that stand side by side in a kept word would change that word's ids.
    forbidden = {pair for word in kept for pair in zip(pieces(word), pieces(word)[1:])}
    for word in sorted(words_of(texts) - kept):
        parts = pieces(word)
        while len(parts) > 1:
            at = next((i for i in range(len(parts) - 1) if (parts[i], parts[i + 1]) not in forbidden), None)
            if at is None:
                break
            pair = (parts[at], parts[at + 1])
            if pair not in known:
                merges.append(pair)
                known.add(pair)
                vocab.setdefault(pair[0] + pair[1], len(vocab))
            parts[at : at + 2] = [pair[0] + pair[1]]
    extended = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token=EOS, pad_token="<|endoftext|>")
    extended.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    return extended


def frame_size(max_side: int, factor: int = 28) -> dict[str, int]:
    """A Qwen2-VL processor's ``size``: a frame's area between one merged token (``factor`` pixels a side)
    and ``max_side`` squared, its shape kept."""
    return {"shortest_edge": factor * factor, "longest_edge": max_side * max_side}


def set_frame_budget(processor, max_side: int) -> None:
    """Resize ``processor``'s images and frames to at most ``max_side`` pixels a side from now on."""
    for part in (processor.image_processor, processor.video_processor):
        part.size = frame_size(max_side, part.patch_size * part.merge_size)


def reframe(model: Path, max_side: int) -> None:
    """Give a trained model folder another frame budget, recorded in its ``training.json`` (``frames``) so
    the recipe repeats it. The vision tower reads any number of patches (rotary positions, no fixed grid),
    so the weights carry over; what the change costs or gives is for ``eval`` to say."""
    model = Path(model)
    processor = AutoProcessor.from_pretrained(model)
    set_frame_budget(processor, max_side)
    processor.save_pretrained(model)
    record = json.loads((model / "training.json").read_text())
    (model / "training.json").write_text(json.dumps({**record, "frames": max_side}, indent=1))


def build_processor(
    tokenizer: Qwen2Tokenizer, *, patch_size: int = 14, merge_size: int = 2, max_side: int = 112
) -> Qwen2_5_VLProcessor:
    """A Qwen2.5-VL processor whose frames are resized to at most ``max_side`` pixels a side."""
    common = dict(patch_size=patch_size, merge_size=merge_size, temporal_patch_size=2,
                  size=frame_size(max_side, patch_size * merge_size))
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**common),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**common, cap_pixels_per_frame=True),
        chat_template=CHAT_TEMPLATE,
    )


def tiny_config(
    tokenizer: Qwen2Tokenizer,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int | None = None,
    vision_hidden: int = 32,
    vision_depth: int = 1,
    patch_size: int = 14,
    merge_size: int = 2,
) -> Qwen2_5_VLConfig:
    """A Qwen2.5-VL config of any size that shares ``tokenizer``'s special-token ids."""
    head_dim = hidden // heads
    half = head_dim // 2
    spatial = 3 * half // 8  # Qwen's (t, h, w) = (16, 24, 24) split of half = 64, at any size
    ids = tokenizer.convert_tokens_to_ids
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate or 3 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [half - 2 * spatial, spatial, spatial],
        },
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids(EOS),
        pad_token_id=ids("<|endoftext|>"),
    )
    vision = dict(
        depth=vision_depth,
        hidden_size=vision_hidden,
        intermediate_size=2 * vision_hidden,
        num_heads=max(1, vision_hidden // 16),
        patch_size=patch_size,
        spatial_merge_size=merge_size,
        temporal_patch_size=2,
        window_size=patch_size * merge_size * 4,
        out_hidden_size=hidden,
        fullatt_block_indexes=[vision_depth - 1],
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
