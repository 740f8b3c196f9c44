"""Load a target/draft pair and turn (clip, prompt) into model inputs.

What differs between Video-LLM families (model class, processor call, where the decoder layers and the
video tokens are, per-request state) sits behind a small ``Adapter``; the decode loop sees only
``ModelPair``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoProcessor, AutoTokenizer, PreTrainedModel
from transformers.video_utils import VideoMetadata

from .errors import UserError
from .video import Clip

log = logging.getLogger(__name__)


class ModelError(UserError):
    """A model or pair that cannot be loaded or used together."""


class Adapter:
    """One Video-LLM family: how to build its inputs and where its video tokens and layers are."""

    model_types: tuple[str, ...] = ()

    @property
    def model_class(self) -> type[PreTrainedModel]:
        raise NotImplementedError

    def inputs(self, processor, clip: Clip, prompt: str) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def video_mask(self, config, input_ids: torch.Tensor) -> torch.Tensor:
        """Boolean mask over the prompt's positions: True where the LLM sees a video token."""
        raise NotImplementedError

    def video_grid(self, config, inputs: dict) -> list[int]:
        """(time, rows, columns) of the video tokens as the LLM sees them, in their sequence order."""
        raise NotImplementedError

    def decoder_layers(self, model: PreTrainedModel) -> torch.nn.ModuleList:
        raise NotImplementedError

    def reset(self, model: PreTrainedModel) -> None:
        """Forget per-request state kept on the model object."""


class QwenVLAdapter(Adapter):
    """Qwen2-VL and Qwen2.5-VL: chat template with a video part, 3-D rotary positions."""

    model_types = ("qwen2_5_vl", "qwen2_vl")

    def __init__(self, model_type: str):
        self.model_type = model_type

    @property
    def model_class(self):
        from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration if self.model_type == "qwen2_5_vl" else Qwen2VLForConditionalGeneration

    def inputs(self, processor, clip: Clip, prompt: str) -> dict[str, torch.Tensor]:
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        # Frames come pre-sampled; the metadata tells the processor their real timing (else it assumes 24 fps).
        metadata = VideoMetadata(
            total_num_frames=clip.source_frames,
            fps=clip.source_fps,
            width=clip.size[0],
            height=clip.size[1],
            duration=clip.seconds,
            frames_indices=clip.indices,
        )
        return dict(
            processor(
                text=[text], videos=[clip.frames], video_metadata=[metadata], do_sample_frames=False, return_tensors="pt"
            )
        )

    def video_mask(self, config, input_ids):
        return input_ids[0] == config.video_token_id

    def video_grid(self, config, inputs):
        t, h, w = inputs["video_grid_thw"][0].tolist()
        merge = config.vision_config.spatial_merge_size
        return [t, h // merge, w // merge]

    def decoder_layers(self, model):
        return model.model.language_model.layers

    def reset(self, model):
        model.model.rope_deltas = None


ADAPTERS: list[type[Adapter]] = [QwenVLAdapter]


def adapter_for(model_type: str) -> Adapter:
    for cls in ADAPTERS:
        if model_type in cls.model_types:
            return cls(model_type)
    known = ", ".join(t for cls in ADAPTERS for t in cls.model_types)
    raise ModelError(f"model type '{model_type}' is not supported (supported: {known})")


@dataclass
class ModelPair:
    """A target, an optional draft of the same tokenizer, and the target's processor."""

    target: PreTrainedModel
    draft: PreTrainedModel | None
    processor: object
    adapter: Adapter
    target_name: str
    draft_name: str | None

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return self.target.get_input_embeddings().weight.device

    @property
    def stop_ids(self) -> frozenset[int]:
        """End-of-answer ids, as ``generate`` reads them from the target's generation config."""
        eos = self.target.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return frozenset([eos] if isinstance(eos, int) else eos)

    def inputs(self, clip: Clip, prompt: str) -> dict[str, torch.Tensor]:
        if not prompt.strip():
            raise UserError("the prompt is empty: ask something about the video")
        inputs = self.adapter.inputs(self.processor, clip, prompt)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}

    def reset(self) -> None:
        for model in (self.target, self.draft):
            if model is not None:
                self.adapter.reset(model)


def _model_type(name: str, role: str) -> str:
    try:
        return AutoConfig.from_pretrained(name).model_type
    except (OSError, ValueError) as err:
        hint = "" if Path(name).exists() or "/" in name else " (not a folder here, nor a hub id)"
        raise ModelError(f"cannot load the {role} '{name}'{hint}: {str(err).splitlines()[0]}") from None


def check_same_tokenizer(target_tok, draft_tok, target: str, draft: str) -> None:
    """Speculative decoding compares token ids, so both models must mean the same thing by each id."""
    if target_tok.get_vocab() != draft_tok.get_vocab():
        a, b = len(target_tok), len(draft_tok)
        raise ModelError(
            f"the draft '{draft}' and the target '{target}' use different tokenizers "
            f"({b} vs {a} tokens): pick a draft from the target's family"
        )


def load_model(adapter: Adapter, name: str, role: str, *, dtype, device_map, attn: str) -> PreTrainedModel:
    try:
        model = adapter.model_class.from_pretrained(
            name, dtype=dtype, device_map=device_map, attn_implementation=attn
        )
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load the {role} '{name}': {str(err).splitlines()[0]}") from None
    return model.eval()


def load_pair(
    target: str,
    draft: str | None = None,
    *,
    device: str | None = None,
    dtype: str | torch.dtype = "auto",
    device_map: str | dict | None = None,
    attn: str = "sdpa",
) -> ModelPair:
    """Load from hub ids or local folders in HuggingFace format.

    ``dtype="auto"`` means bf16 on CUDA and fp32 on CPU. ``device_map`` (e.g. "auto") lets accelerate
    spread a large target over several GPUs; otherwise both models go to ``device``.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    kind = _model_type(target, "target")
    adapter = adapter_for(kind)
    if draft is not None:
        draft_kind = _model_type(draft, "draft")
        if adapter_for(draft_kind).model_class is not adapter.model_class:
            raise ModelError(f"the draft is a '{draft_kind}' model but the target is '{kind}': use one family")
    processor = AutoProcessor.from_pretrained(target)
    if draft is not None:
        check_same_tokenizer(processor.tokenizer, AutoTokenizer.from_pretrained(draft), target, draft)
    load = dict(dtype=dtype, device_map=device_map or device, attn=attn)
    target_model = load_model(adapter, target, "target", **load)
    draft_model = load_model(adapter, draft, "draft", **load) if draft is not None else None
    return ModelPair(target_model, draft_model, processor, adapter, target, draft)
