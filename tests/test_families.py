"""The families the paper runs (Qwen2.5-VL and LLaVA-OneVision), Qwen2-VL beside them, and the pairs people run
today (Qwen3-VL, InternVL3), as tiny random-weight checkpoints of exactly those classes saved as local folders and
loaded back through ``load_pair``: lossless with the full video, with a pruned draft and in Self-SD; pruned positions
are the original ones; the pair is checked against free memory before loading; loading reports what each model
takes. A pair whose heads are padded to different sizes runs every method.

Opt-in: ``LVSPEC_TEST_DEVICE=cuda LVSPEC_TEST_DTYPE=bfloat16`` loads the pairs there (``scripts/gpu_check.sh``). In
16-bit floats a verification pass over K + 1 tokens and a one-token step round differently, so two greedy answers may
part where the target scores two tokens alike: ``assert_same_answer`` accepts that, and only that, there."""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from conftest import MAX_NEW, free_run, hf_tokens, perturb, random_clip, save_model, stop_token, tiny_tokenizer
from transformers import (
    AutoTokenizer,
    DynamicCache,
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVideoProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

from lvspec import bench, cli, fit
from lvspec.assisted import DRAFTS_WITHOUT_VIDEO, generate_assisted
from lvspec.decode import Sequence, Settings, draft_prompt, generate, prefill
from lvspec.models import ModelError, check_same_tokenizer, load_pair
from lvspec.pruning import KEEP, kept_tokens, pruned, regrid, spread_order
from lvspec.toyworld.clipio import write_mp4
from lvspec.toyworld.vocab import CHAT_TEMPLATE, EOS, build_processor, build_tokenizer, tiny_config
from lvspec.trace import RunTrace
from lvspec.video import VideoLimits, read_video

DEVICE = os.environ.get("LVSPEC_TEST_DEVICE", "cpu")
DTYPE = os.environ.get("LVSPEC_TEST_DTYPE", "float64")
LOW_PRECISION = DTYPE in ("bfloat16", "float16")
TIE = 0.02  # 16-bit: two logits closer than this share of the largest logit's size are a near-tie
# 16-bit: a pruned prefill and the full one masked run different shapes, so they agree to rounding, not bit for bit
TOLERANCE = dict(rtol=0.05, atol=0.1) if LOW_PRECISION else {}

# LLaVA-OneVision's (Qwen2) chat layout, reduced to text and video parts.
LLAVA_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'video' %}<video>\n"
    "{% elif part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SIDE, PATCH = 56, 7  # 8×8 patches a frame, pooled to 4×4 video tokens


def llava_onevision(tokenizer):
    tokenizer.add_tokens(["<image>", "<video>"], special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids
    config = LlavaOnevisionConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=SIDE, patch_size=PATCH, vision_use_head=False),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2,
                         max_position_embeddings=4096, eos_token_id=ids("<|im_end|>"),
                         pad_token_id=ids("<|endoftext|>"), bos_token_id=ids("<|endoftext|>")),
        image_token_index=ids("<image>"), video_token_index=ids("<video>"), vision_feature_layer=-1,
        vision_feature_select_strategy="full", image_grid_pinpoints=[[SIDE, SIDE]],
    )
    size = {"height": SIDE, "width": SIDE}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=[[SIDE, SIDE]]),
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=tokenizer, num_image_tokens=(SIDE // PATCH) ** 2, vision_feature_select_strategy="full",
        chat_template=LLAVA_TEMPLATE,
    )
    return LlavaOnevisionForConditionalGeneration, config, processor


def qwen2_vl(tokenizer):
    """Qwen2-VL: Qwen2.5-VL's text side and processor, its own vision tower."""
    text = tiny_config(tokenizer, layers=2, hidden=64)
    text.text_config.initializer_range = 0.2
    config = Qwen2VLConfig(
        text_config=text.text_config.to_dict() | {"model_type": "qwen2_vl_text"},
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=text.image_token_id, video_token_id=text.video_token_id, tie_word_embeddings=True,
        vision_start_token_id=text.vision_start_token_id, vision_end_token_id=text.vision_end_token_id,
    )
    parts = build_processor(tokenizer)
    processor = Qwen2VLProcessor(image_processor=parts.image_processor, video_processor=parts.video_processor,
                                 tokenizer=tokenizer, chat_template=parts.chat_template)
    return Qwen2VLForConditionalGeneration, config, processor


def qwen3_vl(tokenizer):
    """Qwen3-VL: 16-pixel patches, a learned position grid of 4 × 4, interleaved 3-D rotary positions (t, h, w)
    over a head of 16, DeepStack from both vision layers into the first two of three decoder layers, the vision
    side drawn wide: a prefill that left DeepStack out would change the answer, not only the logits."""
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, initializer_range=0.2,
                         max_position_embeddings=4096, bos_token_id=ids("<|endoftext|>"), eos_token_id=ids(EOS),
                         pad_token_id=ids("<|endoftext|>"),
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=16,
                           deepstack_visual_indexes=[0, 1], initializer_range=0.2),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"), tie_word_embeddings=True,
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    common = dict(patch_size=16, merge_size=2, temporal_patch_size=2,
                  size={"shortest_edge": 32 * 32, "longest_edge": 128 * 128 * 8})
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(**common), tokenizer=tokenizer,
                                 video_processor=Qwen3VLVideoProcessor(**common, cap_pixels_per_frame=True),
                                 chat_template=CHAT_TEMPLATE)
    return Qwen3VLForConditionalGeneration, config, processor


# The image tokens an InternVL tokenizer names (as the -hf checkpoints' tokenizer configs do); the chat layout is
# LLaVA-OneVision's (Qwen2) here, a video part written "<video>\n".
INTERNVL_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                   "video_token": "<video>"}


def internvl(tokenizer):
    """InternVL3 (the -hf format): a frame is one 56-pixel tile, 8 × 8 patches pixel-shuffled to 4 × 4 vectors."""
    with tempfile.TemporaryDirectory() as folder:  # the named image tokens come with loading, as from the hub
        tokenizer.save_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder, extra_special_tokens=INTERNVL_TOKENS)
    tokenizer.add_tokens(list(INTERNVL_TOKENS.values()), special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids
    per_frame = (SIDE // PATCH // 2) ** 2
    config = InternVLConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=SIDE, patch_size=PATCH),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2,
                         max_position_embeddings=4096, eos_token_id=ids(EOS), pad_token_id=ids("<|endoftext|>"),
                         bos_token_id=ids("<|endoftext|>")),
        image_token_id=ids("<IMG_CONTEXT>"), image_seq_length=per_frame,
    )
    size = {"height": SIDE, "width": SIDE}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=False),
        video_processor=InternVLVideoProcessor(size=size), tokenizer=tokenizer, image_seq_length=per_frame,
        chat_template=LLAVA_TEMPLATE,
    )
    return InternVLForConditionalGeneration, config, processor


BUILDERS = {"llava_onevision": llava_onevision, "qwen2_vl": qwen2_vl, "qwen3_vl": qwen3_vl, "internvl": internvl}


def save(folder, model, processor, perturb_from=None, noise: float = 0.0):
    if perturb_from is not None:
        perturb(model, perturb_from, noise)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model


class Family(NamedTuple):
    kind: str  # the model_type
    target: str
    draft: str


@pytest.fixture(scope="module", params=["qwen2_5_vl", "llava_onevision", "qwen2_vl", "qwen3_vl", "internvl"])
def family(request, tmp_path_factory) -> Family:
    """Target and draft folders of one family: the draft a perturbed copy of the target."""
    root = tmp_path_factory.mktemp(request.param)
    tokenizer = tiny_tokenizer()
    if request.param == "qwen2_5_vl":
        target = save_model(root / "target", tokenizer, seed=3, layers=2)
        save_model(root / "draft", tokenizer, seed=4, layers=2, perturb_from=target, noise=0.08)
    else:
        model_class, config, processor = BUILDERS[request.param](tokenizer)
        torch.manual_seed(3)
        target = save(root / "target", model_class(config), processor)
        save(root / "draft", model_class(config), processor, perturb_from=target, noise=0.08)
    return Family(request.param, str(root / "target"), str(root / "draft"))


@pytest.fixture(scope="module")
def pair(family):
    return load_pair(*family[1:], device=DEVICE, dtype=DTYPE)


# Qwen: 4 × 4 × 4 video tokens; LLaVA-OneVision: 8 × 4 × 4 and a newline; InternVL: 8 × 4 × 4
CLIP = random_clip(7, 8, 112, 112)
PROMPT = "Describe the video."


@torch.inference_mode()
def prompt_logits(model, prompt, vocab: int, answer: list[int] = ()) -> torch.Tensor:
    """``model``'s logits (vocab,) after reading ``prompt`` and then ``answer``."""
    seq = Sequence(model, DynamicCache(config=model.config), prompt.offset, vocab)
    logits = seq.read(prompt.embeds, prompt.positions, 1, **prompt.decoder_inputs())
    return (seq.forward(list(answer), 1) if answer else logits)[-1].float()


def assert_same_answer(pair, clip, prompt: str, got: list[int], want: list[int]) -> None:
    """Token for token; in 16-bit floats, up to a place where the target's greedy choice is a near-tie."""
    if got == want or not LOW_PRECISION:
        assert got == want
        return
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    assert at is not None, f"one answer is a prefix of the other: {got} vs {want}"
    logits = prompt_logits(pair.target, pair.read(clip, prompt).prompt, pair.vocab, want[:at])
    gap = abs(logits[got[at]] - logits[want[at]])
    assert gap <= TIE * logits.abs().max(), f"answers part at {at} where the target is sure: {got} vs {want}"


def test_loads_the_family_class_from_a_local_folder(pair, family):
    assert type(pair.target).__name__ == type(pair.draft).__name__
    assert pair.target.config.model_type == family.kind
    assert [r.role for r in pair.loads] == ["target", "draft"]
    assert [r.bytes for r in pair.loads] == [m.get_memory_footprint() for m in (pair.target, pair.draft)]
    assert all(r.devices == (str(pair.device),) and r.dtype == DTYPE for r in pair.loads)
    inputs = pair.inputs(CLIP, PROMPT)
    mask = pair.adapter.video_mask(pair.target.config, inputs["input_ids"])
    assert int(mask.sum()) == np.prod(pair.adapter.video_grid(pair.target.config, inputs))


@pytest.fixture(scope="module")
def reference(pair) -> tuple[list[int], int]:
    """The target's own greedy answer (MAX_NEW tokens, equal to transformers' ``generate``) and a stop id it never contains."""
    vanilla, stop = free_run(pair, CLIP, PROMPT)
    assert len(vanilla) == MAX_NEW
    with stop_token(pair, stop):
        assert_same_answer(pair, CLIP, PROMPT, hf_tokens(pair, CLIP, PROMPT), vanilla)
    return vanilla, stop


@pytest.mark.parametrize(
    "settings",
    [Settings(k=4), Settings(k=4, draft_keep=0.1), Settings(k=3, draft_keep=0.5),
     Settings(k=4, self_draft=True, draft_keep=0.1), Settings(k=5, self_draft=True, draft_keep=0.3)],
    ids=["full", "keep10", "keep50", "self-sd10", "self-sd30"],
)
def test_exact_equals_vanilla(pair, reference, settings):
    vanilla, stop = reference
    with stop_token(pair, stop):
        exact = generate(pair, CLIP, PROMPT, "exact", replace(settings, max_new_tokens=MAX_NEW))
        assert_same_answer(pair, CLIP, PROMPT, exact.token_ids, vanilla)
        strict = replace(settings, lam=0.0, window=0, max_new_tokens=MAX_NEW)
        assert_same_answer(pair, CLIP, PROMPT, generate(pair, CLIP, PROMPT, "lvspec", strict).token_ids, vanilla)
    video_tokens = int(pair.adapter.video_mask(pair.target.config, pair.inputs(CLIP, PROMPT)["input_ids"]).sum())
    assert exact.video.draft_tokens == math.ceil(settings.draft_keep * video_tokens)
    assert exact.draft.endswith("(self, 10% of the video)") == (settings.self_draft and settings.draft_keep == 0.1)
    if settings.self_draft:  # the pruned self is another model: it gets some tokens wrong
        assert "reject" in {v for r in exact.rounds for v in r.verdicts}


def test_self_draft_of_the_whole_video_accepts_everything(pair, reference):
    k = 4
    with stop_token(pair, reference[1]):
        trace = generate(pair, CLIP, PROMPT, "exact", Settings(k=k, self_draft=True, max_new_tokens=1 + 4 * (k + 1)))
    if LOW_PRECISION:  # the draft's one-token steps and the target's K + 1 pass may part at a near-tie
        assert_same_answer(pair, CLIP, PROMPT, trace.token_ids, reference[0][: len(trace.token_ids)])
    else:
        assert [r.committed for r in trace.rounds] == [k + 1] * 4


@torch.inference_mode()
def test_pruned_draft_reads_its_tokens_at_their_original_positions(pair):
    """A pruned prefill, and the decoding after it, equal the full prompt with the pruned tokens masked out
    of attention: same keys at the same rotary positions (Qwen's 3-D ones included)."""
    draft, inputs = pair.draft, pair.inputs(CLIP, PROMPT)
    full = pair.prompt(draft, inputs)
    mask = pair.adapter.video_mask(draft.config, inputs["input_ids"])
    grid = pair.adapter.video_grid(draft.config, inputs)
    kept = kept_tokens(torch.randn(int(mask.sum()), generator=torch.Generator().manual_seed(0)), grid, 0.25)
    small = pruned(full, mask, kept)
    assert small.embeds.shape[1] == full.embeds.shape[1] - int((~kept).sum())
    assert small.offset == full.offset + int((~kept).sum())

    seq, first = prefill(draft, small, pair.vocab)
    logits = seq.forward([first, 5, 7])
    device = pair.device
    attend = torch.ones(full.embeds.shape[1] + 3, dtype=torch.long, device=device)
    attend[mask.cpu().nonzero()[:, 0][~kept].to(device)] = 0
    more = torch.arange(3, device=device) + full.embeds.shape[1] + full.offset
    positions = torch.cat([full.positions, more.expand(*full.positions.shape[:-1], 3)], dim=-1)
    embeds = torch.cat([full.embeds, draft.get_input_embeddings()(torch.tensor([[first, 5, 7]], device=device))], dim=1)
    extra = full.decoder_inputs()
    if full.deepstack is not None:  # Qwen3-VL: DeepStack vectors land on the video tokens, none on the answer
        extra["visual_pos_masks"] = torch.cat([full.deepstack.mask, full.deepstack.mask.new_zeros(1, 3)], dim=-1)
    hidden = draft.get_decoder()(inputs_embeds=embeds, position_ids=positions, attention_mask=attend[None],
                                 **extra).last_hidden_state
    reference = draft.get_output_embeddings()(hidden[0, -3:])[:, : pair.vocab]
    torch.testing.assert_close(logits, reference, **TOLERANCE)
    # and nothing pruned is the unpruned prompt itself
    whole, count = draft_prompt(pair, draft, pair.read(CLIP, PROMPT), None, keep=1.0)
    assert count == int(mask.sum()) and whole.embeds.shape == pair.prompt(draft, inputs).embeds.shape


@torch.inference_mode()
def test_the_prompt_reads_as_the_models_own_forward(pair, family):
    """Prefilling from the prompt's vectors gives the logits of the model's own forward on the processor's
    inputs. Qwen3-VL's DeepStack vectors are part of the prompt: without them it would not."""
    inputs = pair.inputs(CLIP, PROMPT)
    prompt = pair.read(CLIP, PROMPT).prompt
    pair.reset()
    own = pair.target(**inputs, logits_to_keep=1).logits[0, -1, : pair.vocab].float()
    torch.testing.assert_close(prompt_logits(pair.target, prompt, pair.vocab), own, **TOLERANCE)
    assert (prompt.deepstack is not None) == (family.kind == "qwen3_vl")
    if prompt.deepstack is not None:
        assert not torch.allclose(prompt_logits(pair.target, replace(prompt, deepstack=None), pair.vocab), own)


def test_kept_tokens_take_the_signal_top_and_spread_the_rest():
    grid = [4, 8, 8]
    signal = torch.linspace(0, -1, 256)
    signal[[3, 77, 200]] = 1.0
    kept = kept_tokens(signal, grid, keep=0.1)  # 26 tokens: 13 by the signal, 13 spread
    top = torch.zeros(256, dtype=torch.bool)
    top[signal.topk(13).indices] = True
    assert int(kept.sum()) == 26 and kept[top].all() and kept[[3, 77, 200]].all()
    spread = kept_tokens(signal, grid, keep=0.25, signal_share=0.0).view(4, 8, 8)
    lattice = torch.zeros(8, 8, dtype=torch.bool)
    lattice[::2, ::2] = True
    assert (spread == lattice).all()  # a quarter of the tokens, spread: every frame on the step-2 lattice
    order = spread_order(grid)
    assert sorted(order.tolist()) == list(range(256))
    first = {(int(i) % 64 // 8, int(i) % 8) for i in order[:16]}
    assert first == {(y, x) for y in (0, 4) for x in (0, 4)}  # coarse lattice first, in every frame


def test_a_signal_carried_to_a_finer_grid_peaks_at_the_same_place():
    signal = torch.zeros(2, 4, 4)
    signal[1, 3, 0] = 1.0  # second time step, bottom-left
    assert torch.equal(regrid(signal.flatten(), [2, 4, 4], [2, 4, 4]), signal.flatten())
    finer = regrid(signal.flatten(), [2, 4, 4], [2, 6, 6]).view(2, 6, 6)
    assert (finer[1] == finer.max()).nonzero().tolist() == [[5, 0]] and finer[0].max() == 0


def test_a_pair_too_large_fails_before_loading_and_says_what_fits(family, monkeypatch):
    monkeypatch.setattr(fit, "free_bytes", lambda device: 200_000)
    monkeypatch.setattr("lvspec.models.load_model", lambda *a, **k: pytest.fail("loaded weights"))
    with pytest.raises(ModelError, match=r"cpu has 0\.2 MiB free\. What fits there: about 0\.0M parameters"):
        load_pair(*family[1:], device="cpu")
    target_only = fit.HEADROOM * 4 * fit.parameter_count(*_class_and_config(family.target))
    monkeypatch.setattr(fit, "free_bytes", lambda device: int(target_only) + 1)
    with pytest.raises(ModelError, match="the target alone fits, and with --self-draft"):
        load_pair(*family[1:], device="cpu")


def _class_and_config(folder):
    from transformers import AutoConfig

    from lvspec.models import adapter_for

    config = AutoConfig.from_pretrained(folder)
    return adapter_for(config.model_type).model_class, config


def test_loading_reports_progress_and_remote_code_warns(family):
    heard = []
    with pytest.warns(UserWarning, match="trust_remote_code"):
        load_pair(*family[1:], device="cpu", trust_remote_code=True, progress=lambda f, m: heard.append((f, m)))
    fractions = [f for f, _ in heard]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert heard[1][1].startswith("loaded target ") and "MiB in float32 on cpu" in heard[1][1]


def test_cli_self_draft_and_pruned_draft(family, pair, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    write_mp4(np.random.default_rng(1).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8), str(video), fps=6)
    base = ["generate", "--video", str(video), "--prompt", PROMPT, "--method", "exact", "--target", family.target,
            "--max-new-tokens", "6", "--frames", "4", "--k", "2", "--device", DEVICE, "--dtype", DTYPE]
    assert cli.main([*base, "--self-draft", "--json", str(tmp_path / "self.json")]) == 0
    assert cli.main([*base, "--draft", family.draft, "--draft-keep", "--json", str(tmp_path / "pruned.json")]) == 0
    err = capsys.readouterr().err
    assert f"loaded target {family.target}: " in err and f"loaded draft {family.draft}: " in err
    own, pruned_draft = RunTrace.load(tmp_path / "self.json"), RunTrace.load(tmp_path / "pruned.json")
    assert own.params.self_draft and own.params.draft_keep == KEEP and own.draft.startswith(family.target)
    assert not pruned_draft.params.self_draft and pruned_draft.params.draft_keep == KEEP
    assert pruned_draft.draft == family.draft
    clip = read_video(str(video), VideoLimits(max_frames=4))
    assert_same_answer(pair, clip, PROMPT, own.token_ids, pruned_draft.token_ids)
    with pytest.raises(SystemExit):
        cli.main([*base, "--self-draft", "--draft", family.draft])
    assert "leave out --draft" in capsys.readouterr().err


def test_the_papers_pairs_against_gpu_memory(monkeypatch):
    """The fit check on the paper's pairs (their real parameter counts) and simulated 80 GiB GPUs."""
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(fit, "free_bytes", lambda device: 80 * gib)

    def pair(target_place, draft_place="cuda:0"):
        return [fit.Need("target", "Qwen/Qwen2.5-VL-32B-Instruct", 33_452_718_336, 2 * 33_452_718_336, target_place),
                fit.Need("draft", "Qwen/Qwen2.5-VL-7B-Instruct", 8_292_166_656, 2 * 8_292_166_656, draft_place)]

    one = fit.shortfall(pair("cuda:0"), torch.bfloat16)
    assert "the target 'Qwen/Qwen2.5-VL-32B-Instruct' (33.5B parameters, 62.3 GiB)" in one
    assert "need about 93.3 GiB" in one and "cuda:0 has 80.0 GiB free" in one
    assert "about 35.8B parameters in bfloat16" in one and "the target alone fits" in one
    assert "all 3 GPUs have 240.0 GiB free: spread the models with --device-map auto" in one
    assert fit.shortfall(pair("auto", "auto"), torch.bfloat16) is None
    assert fit.shortfall(pair("cuda:0", "cuda:1"), torch.bfloat16) is None  # each on its own GPU
    llava = [fit.Need("target", "llava-hf/llava-onevision-qwen2-72b-ov-hf", 73_181_570_592, 2 * 73_181_570_592, "auto")]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert "2 GPUs (cuda:0, cuda:1) have 160.0 GiB free" in fit.shortfall(llava, torch.bfloat16)
    assert fit.shortfall(pair({"": 0}, {"": 0}), torch.bfloat16) is None  # an explicit device map is the user's call


def test_app_runs_self_sd_and_a_pruned_draft(family, pair, tmp_path, monkeypatch):
    """The app loads as it does for its users (bf16 on CUDA, fp32 on a CPU)."""
    import app

    monkeypatch.setenv("LVSPEC_MODEL_DIRS", str(Path(family.target).parent))
    video = tmp_path / "clip.mp4"
    write_mp4(np.random.default_rng(2).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8), str(video), fps=6)
    quick = (2, 0.7, 10, 0, 3, 0, 6, 4)  # k, λ, top-N, τ, w, ε, max new tokens, frames
    own = list(app.api_generate(str(video), PROMPT, "exact", family.target, family.draft, *quick, KEEP, True))[-1]
    pruned_draft = list(app.api_generate(str(video), PROMPT, "exact", family.target, family.draft, *quick, 0.5, False))[-1]
    own, pruned_draft = RunTrace.from_json(own), RunTrace.from_json(pruned_draft)
    assert own.params.self_draft and own.draft.startswith(family.target) and own.video.draft_tokens > 0
    assert pruned_draft.draft == family.draft and pruned_draft.params.draft_keep == 0.5
    clip = read_video(str(video), VideoLimits(max_frames=4))
    assert_same_answer(pair, clip, PROMPT, own.token_ids, pruned_draft.token_ids)


@torch.inference_mode()
def test_transformers_assisted_generation_drafts_without_the_video(pair, family):
    """What bench says under its table when ``hf`` runs: the draft's prefill in ``generate(assistant_model=…)``
    scores the prompt as the draft does with the video tokens' placeholder embeddings, not with the video."""
    inputs = pair.inputs(CLIP, PROMPT)
    first = []
    hook = pair.draft.register_forward_hook(lambda module, args, out: first.append(out.logits[0, -1, : pair.vocab]))
    try:
        pair.reset()
        pair.target.generate(**inputs, assistant_model=pair.draft, do_sample=False, max_new_tokens=2)
    finally:
        hook.remove()
    seen = pair.prompt(pair.draft, inputs)
    blind = replace(seen, embeds=pair.draft.get_input_embeddings()(inputs["input_ids"]), deepstack=None)

    def drafted_from(prompt) -> bool:
        return torch.allclose(first[0].float(), prompt_logits(pair.draft, prompt, pair.vocab), **TOLERANCE)

    assert drafted_from(blind) and not drafted_from(seen)
    assert family.kind in DRAFTS_WITHOUT_VIDEO


def padded(folder, tokenizer, rows: int, seed: int, source=None):
    """A Qwen2.5-VL checkpoint whose head has ``rows`` rows, those past the tokenizer zero (a trained
    checkpoint's padded rows never win); with ``source``, a perturbed copy of it whose padded rows score
    ±1000 along the first hidden dimensions, so a plain argmax over its head picks one every time."""
    config = tiny_config(tokenizer, layers=2, hidden=64)
    config.text_config.initializer_range = 0.2
    config.text_config.vocab_size = rows
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    n = len(tokenizer)
    with torch.no_grad():
        if source is not None:
            weights = source.state_dict()
            for name, weight in model.state_dict().items():
                weight.copy_(weights[name][: len(weight)])
            for p in model.model.language_model.parameters():
                p.add_(0.08 * p.std() * torch.randn_like(p))
        head = model.get_output_embeddings().weight
        head[n:] = 0
        if source is not None:
            for j in range(rows - n):
                head[n + j, j // 2] = 1000.0 * (-1) ** j
    model.save_pretrained(folder)
    build_processor(tokenizer).save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def padded_pair(tmp_path_factory):
    """Target with tokenizer + 64 rows, draft with tokenizer + 8 (real Qwen2.5-VL: 152,064 at 7B, 151,936 at 3B)."""
    root, tokenizer = tmp_path_factory.mktemp("padded"), tiny_tokenizer()
    target = padded(root / "target", tokenizer, len(tokenizer) + 64, seed=3)
    padded(root / "draft", tokenizer, len(tokenizer) + 8, seed=4, source=target)
    return load_pair(str(root / "target"), str(root / "draft"), device=DEVICE, dtype=DTYPE)


def test_a_pair_padded_to_different_sizes_runs_every_method(padded_pair):
    pair, n = padded_pair, len(padded_pair.tokenizer)
    assert pair.vocab == n and [m.config.text_config.vocab_size for m in (pair.target, pair.draft)] == [n + 64, n + 8]
    naive = prompt_logits(pair.draft, pair.prompt(pair.draft, pair.inputs(CLIP, PROMPT)), n + 8)
    assert naive.argmax() >= n  # a plain argmax would draft a padded row
    vanilla, stop = free_run(pair, CLIP, PROMPT)
    with stop_token(pair, stop):
        assert_same_answer(pair, CLIP, PROMPT, hf_tokens(pair, CLIP, PROMPT), vanilla)
        lossless = [("exact", Settings(k=4)), ("exact", Settings(k=4, draft_keep=0.25)),
                    ("exact", Settings(k=4, self_draft=True, draft_keep=0.25)),
                    ("lvspec", Settings(k=4, lam=0.0, window=0))]
        for method, settings in lossless:
            trace = generate(pair, CLIP, PROMPT, method, replace(settings, max_new_tokens=MAX_NEW))
            assert_same_answer(pair, CLIP, PROMPT, trace.token_ids, vanilla)
        assert "exact" in {v for r in trace.rounds for v in r.verdicts}  # the draft proposes real tokens, some right
        for method in ("lvspec", "fly", "random"):
            trace = generate(pair, CLIP, PROMPT, method, Settings(k=4, max_new_tokens=MAX_NEW))
            assert len(trace.token_ids) == MAX_NEW and max(trace.token_ids) < n
            assert all(d < n for r in trace.rounds for d in r.draft_ids)
        hf = generate_assisted(pair, CLIP, PROMPT, Settings(k=4, max_new_tokens=MAX_NEW))
        assert_same_answer(pair, CLIP, PROMPT, hf.token_ids, vanilla)


def test_the_tokenizer_check_refuses_another_tokenizer_in_one_line():
    same = tiny_tokenizer()
    check_same_tokenizer(same, tiny_tokenizer(), "target", "draft")
    other = build_tokenizer(["completely different words here"] * 20, vocab_size=300)
    with pytest.raises(ModelError, match="use different tokenizers") as refused:
        check_same_tokenizer(same, other, "target", "draft")
    assert "\n" not in str(refused.value) and f"({len(other)} vs {len(same)} tokens)" in str(refused.value)


def test_bench_notes_how_hf_drafts(padded_pair, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    write_mp4(np.random.default_rng(3).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8), str(video), fps=4)
    items = [bench.Item(str(video), PROMPT)]
    configs = bench.bench_configs(["vanilla", "hf"], Settings(k=2, max_new_tokens=6))
    result = bench.run(padded_pair, items, configs, frames=4)
    assert result["notes"] == [
        "hf: transformers' assisted generation drafts without the video for qwen2_5_vl (its draft reads the video "
        "tokens' placeholders)",
        f"hf: the heads differ in size ({len(padded_pair.tokenizer) + 64} vs {len(padded_pair.tokenizer) + 8} rows), "
        "so transformers runs universal assisted decoding, which re-tokenizes the text every round",
    ]
    bench.print_table(result)
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2:] == result["notes"]
    without_hf = bench.bench_configs(["vanilla"], Settings(max_new_tokens=4))
    assert bench.run(padded_pair, items, without_hf, frames=4)["notes"] == []
