"""The families the paper runs (Qwen2.5-VL and LLaVA-OneVision, and Qwen2-VL beside them), as tiny random-weight
checkpoints of exactly those classes saved as local folders and loaded back through ``load_pair``: lossless with the full video, with
a pruned draft and in Self-SD; pruned positions are the original ones; the pair is checked against free memory
before loading; loading reports what each model takes."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from conftest import MAX_NEW, free_run, hf_tokens, perturb, random_clip, save_model, stop_token, tiny_tokenizer
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
)

from lvspec import cli, fit
from lvspec.decode import Settings, draft_prompt, generate, prefill
from lvspec.models import ModelError, load_pair
from lvspec.pruning import KEEP, kept_tokens, pruned, spread_order
from lvspec.toyworld.clipio import write_mp4
from lvspec.toyworld.vocab import build_processor, tiny_config
from lvspec.trace import RunTrace

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


@pytest.fixture(scope="module", params=["qwen2_5_vl", "llava_onevision", "qwen2_vl"])
def family(request, tmp_path_factory) -> Family:
    """Target and draft folders of one family: the draft a perturbed copy of the target."""
    root = tmp_path_factory.mktemp(request.param)
    tokenizer = tiny_tokenizer()
    if request.param == "qwen2_5_vl":
        target = save_model(root / "target", tokenizer, seed=3, layers=2)
        save_model(root / "draft", tokenizer, seed=4, layers=2, perturb_from=target, noise=0.08)
    else:
        model_class, config, processor = {"llava_onevision": llava_onevision, "qwen2_vl": qwen2_vl}[request.param](tokenizer)
        torch.manual_seed(3)
        target = save(root / "target", model_class(config), processor)
        save(root / "draft", model_class(config), processor, perturb_from=target, noise=0.08)
    return Family(request.param, str(root / "target"), str(root / "draft"))


@pytest.fixture(scope="module")
def pair(family):
    return load_pair(*family[1:], device="cpu", dtype="float64")


CLIP = random_clip(7, 8, 112, 112)  # Qwen: 4 × 4 × 4 video tokens; LLaVA-OneVision: 8 × 4 × 4 and a newline
PROMPT = "Describe the video."


def test_loads_the_family_class_from_a_local_folder(pair, family):
    assert type(pair.target).__name__ == type(pair.draft).__name__
    assert pair.target.config.model_type == family.kind
    assert [r.role for r in pair.loads] == ["target", "draft"]
    assert [r.bytes for r in pair.loads] == [m.get_memory_footprint() for m in (pair.target, pair.draft)]
    assert all(r.devices == ("cpu",) and r.dtype == "float64" for r in pair.loads)
    inputs = pair.inputs(CLIP, PROMPT)
    mask = pair.adapter.video_mask(pair.target.config, inputs["input_ids"])
    assert int(mask.sum()) == np.prod(pair.adapter.video_grid(pair.target.config, inputs))


@pytest.fixture(scope="module")
def reference(pair) -> tuple[list[int], int]:
    """The target's own greedy answer (MAX_NEW tokens, equal to transformers' ``generate``) and a stop id it never contains."""
    vanilla, stop = free_run(pair, CLIP, PROMPT)
    assert len(vanilla) == MAX_NEW
    with stop_token(pair, stop):
        assert hf_tokens(pair, CLIP, PROMPT) == vanilla
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
        assert exact.token_ids == vanilla
        strict = replace(settings, lam=0.0, window=0, max_new_tokens=MAX_NEW)
        assert generate(pair, CLIP, PROMPT, "lvspec", strict).token_ids == vanilla
    video_tokens = int(pair.adapter.video_mask(pair.target.config, pair.inputs(CLIP, PROMPT)["input_ids"]).sum())
    assert exact.video.draft_tokens == math.ceil(settings.draft_keep * video_tokens)
    assert exact.draft.endswith("(self, 10% of the video)") == (settings.self_draft and settings.draft_keep == 0.1)
    if settings.self_draft:  # the pruned self is another model: it gets some tokens wrong
        assert "reject" in {v for r in exact.rounds for v in r.verdicts}


def test_self_draft_of_the_whole_video_accepts_everything(pair, reference):
    k = 4
    with stop_token(pair, reference[1]):
        trace = generate(pair, CLIP, PROMPT, "exact", Settings(k=k, self_draft=True, max_new_tokens=1 + 4 * (k + 1)))
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

    seq, first = prefill(draft, small)
    logits = seq.forward([first, 5, 7])
    attend = torch.ones(full.embeds.shape[1] + 3, dtype=torch.long)
    attend[mask.nonzero()[:, 0][~kept]] = 0
    more = torch.arange(3) + full.embeds.shape[1] + full.offset
    positions = torch.cat([full.positions, more.expand(*full.positions.shape[:-1], 3)], dim=-1)
    embeds = torch.cat([full.embeds, draft.get_input_embeddings()(torch.tensor([[first, 5, 7]]))], dim=1)
    reference = draft(inputs_embeds=embeds, position_ids=positions, attention_mask=attend[None]).logits[0]
    torch.testing.assert_close(logits, reference[-3:])
    # and nothing pruned is the unpruned prompt itself
    whole, count = draft_prompt(pair, draft, pair.read(CLIP, PROMPT), None, keep=1.0)
    assert count == int(mask.sum()) and whole.embeds.shape == pair.prompt(draft, inputs).embeds.shape


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


def test_cli_self_draft_and_pruned_draft(family, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    write_mp4(np.random.default_rng(1).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8), str(video), fps=6)
    base = ["generate", "--video", str(video), "--prompt", PROMPT, "--method", "exact", "--target", family.target,
            "--max-new-tokens", "6", "--frames", "4", "--k", "2"]
    assert cli.main([*base, "--self-draft", "--json", str(tmp_path / "self.json")]) == 0
    assert cli.main([*base, "--draft", family.draft, "--draft-keep", "--json", str(tmp_path / "pruned.json")]) == 0
    err = capsys.readouterr().err
    assert f"loaded target {family.target}: " in err and f"loaded draft {family.draft}: " in err
    own, pruned_draft = RunTrace.load(tmp_path / "self.json"), RunTrace.load(tmp_path / "pruned.json")
    assert own.params.self_draft and own.params.draft_keep == KEEP and own.draft.startswith(family.target)
    assert not pruned_draft.params.self_draft and pruned_draft.params.draft_keep == KEEP
    assert pruned_draft.draft == family.draft and own.token_ids == pruned_draft.token_ids
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


def test_app_runs_self_sd_and_a_pruned_draft(family, tmp_path, monkeypatch):
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
    assert own.token_ids == pruned_draft.token_ids
