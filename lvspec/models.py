"""Load a target/draft pair and turn (clip, prompt) into what each decoder reads.

What differs between Video-LLM families (model class, processor call, where the decoder layers and the
video tokens are, how video features and rotary positions are computed, per-request state) sits behind a
small ``Adapter``; the decode loop sees only ``ModelPair`` and ``Prompt``.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoProcessor, PreTrainedModel
from transformers.video_utils import VideoMetadata

from .errors import UserError
from .fit import Need, Placement, parameter_count, shortfall, size
from .video import Clip

log = logging.getLogger(__name__)


class ModelError(UserError):
    """A model or pair that cannot be loaded or used together."""


@dataclass
class Deepstack:
    """Vision features that Qwen3-VL adds to the hidden states of its first decoder layers at the video
    positions (DeepStack), beside the ones that fill the video slots: ``mask`` (1, L) marks those positions,
    ``layers[i]`` (video tokens, hidden) is what decoder layer i adds there. Each vector lands on its own
    token only, so a prompt without some video tokens drops their rows and stays exact."""

    mask: torch.Tensor
    layers: list[torch.Tensor]

    def keep(self, columns: torch.Tensor) -> Deepstack:
        rows = columns.to(self.mask.device)[self.mask[0]]
        return Deepstack(self.mask[:, columns.to(self.mask.device)], [x[rows.to(x.device)] for x in self.layers])

    def decoder_inputs(self) -> dict:
        """The keywords Qwen3-VL's language model reads them by."""
        return {"visual_pos_masks": self.mask, "deepstack_visual_embeds": self.layers}


@dataclass
class Prompt:
    """A request as one decoder reads it at prefill: text embeddings with the video features in the video
    slots, their rotary positions, ``offset``, how far the position of every later token runs ahead of
    its cache index (Qwen's rope delta), and the family's ``deepstack`` features if it has them. Prefilling
    from vectors lets one encoded video serve two readings of it (the full target and its pruned self in
    Self-SD) and lets a draft drop video tokens."""

    embeds: torch.Tensor  # (1, L, hidden)
    positions: torch.Tensor  # (1, L), or (3, 1, L) for Qwen's 3-D rotary positions
    offset: int
    deepstack: Deepstack | None = None

    def keep(self, columns: torch.Tensor) -> Prompt:
        """The prompt without the positions where ``columns`` (L,) is False. The kept tokens keep their
        original positions and later tokens continue where the full prompt's would, so a draft that reads
        fewer video tokens still places its answer exactly where the target does."""
        dropped = int((~columns).sum())
        return Prompt(
            self.embeds[:, columns.to(self.embeds.device)],
            self.positions[..., columns.to(self.positions.device)],
            self.offset + dropped,
            None if self.deepstack is None else self.deepstack.keep(columns),
        )

    def decoder_inputs(self) -> dict:
        """What the language model reads beside the embeddings and positions."""
        return {} if self.deepstack is None else self.deepstack.decoder_inputs()


@dataclass
class VideoFeatures:
    """What a family's vision side hands its language model: the vectors that fill the video slots, in order
    (slots, hidden), and per early decoder layer the DeepStack vectors added at those slots (Qwen3-VL)."""

    slots: torch.Tensor
    deepstack: list[torch.Tensor] = field(default_factory=list)


@dataclass
class Reading:
    """One request, read once: the processor's ``inputs``, the target's ``prompt``, which prompt positions
    hold video tokens (``video_mask``, (L,)) and their ``grid`` (time steps, rows, columns). A draft whose
    own processor sizes frames otherwise reads ``draft_inputs``; None: it reads ``inputs``."""

    inputs: dict
    prompt: Prompt
    video_mask: torch.Tensor
    grid: list[int]
    draft_inputs: dict | None = None


class Adapter:
    """One Video-LLM family: how to build its inputs and where its video tokens and layers are."""

    model_types: tuple[str, ...] = ()

    def __init__(self, model_type: str):
        self.model_type = model_type

    @property
    def model_class(self) -> type[PreTrainedModel]:
        raise NotImplementedError

    def inputs(self, processor, clip: Clip, prompt: str) -> dict[str, torch.Tensor]:
        """The chat text and the sampled frames through the family's processor (Qwen adds their timing)."""
        return dict(processor(text=[self.chat(processor, prompt)], videos=[clip.frames], return_tensors="pt"))

    def chat(self, processor, prompt: str) -> str:
        """The prompt in the checkpoint's own chat template, with the video before the question."""
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def video_slots(self, config, input_ids: torch.Tensor) -> torch.Tensor:
        """Boolean mask over the prompt's positions: True where a vector of the video encoder goes in."""
        return input_ids[0] == config.video_token_id

    def video_mask(self, config, input_ids: torch.Tensor) -> torch.Tensor:
        """True where the LLM sees a video token that is a place in the clip (in ``video_grid`` order)."""
        return self.video_slots(config, input_ids)

    def video_grid(self, config, inputs: dict) -> list[int]:
        """(time, rows, columns) of the video tokens as the LLM sees them, in their sequence order."""
        raise NotImplementedError

    def video_features(self, model: PreTrainedModel, inputs: dict) -> VideoFeatures:
        """The vision side's output for these inputs, in the video slots' order."""
        raise NotImplementedError

    def positions(self, model: PreTrainedModel, inputs: dict) -> tuple[torch.Tensor, int]:
        """Rotary positions of the prompt and the offset of later tokens (plain 1-D: 0..L−1, offset 0)."""
        length = inputs["input_ids"].shape[1]
        return torch.arange(length, device=inputs["input_ids"].device)[None], 0

    def decoder_layers(self, model: PreTrainedModel) -> torch.nn.ModuleList:
        return model.model.language_model.layers

    def reset(self, model: PreTrainedModel) -> None:
        """Forget per-request state kept on the model object."""

    def prompt(self, model: PreTrainedModel, inputs: dict) -> Prompt:
        ids = inputs["input_ids"]
        embeds = model.get_input_embeddings()(ids)
        slots = self.video_slots(model.config, ids).to(embeds.device)
        features = self.video_features(model, inputs)
        embeds[0, slots] = features.slots.to(embeds.device, embeds.dtype)
        positions, offset = self.positions(model, inputs)
        deepstack = Deepstack(slots[None], features.deepstack) if features.deepstack else None
        return Prompt(embeds, positions, offset, deepstack)


class QwenVLAdapter(Adapter):
    """Qwen2-VL and Qwen2.5-VL: chat template with a video part, 3-D rotary positions (mrope)."""

    model_types = ("qwen2_5_vl", "qwen2_vl")

    @property
    def model_class(self):
        from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration if self.model_type == "qwen2_5_vl" else Qwen2VLForConditionalGeneration

    def inputs(self, processor, clip: Clip, prompt: str) -> dict[str, torch.Tensor]:
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
                text=[self.chat(processor, prompt)], videos=[clip.frames], video_metadata=[metadata],
                do_sample_frames=False, return_tensors="pt",
            )
        )

    def video_grid(self, config, inputs):
        t, h, w = inputs["video_grid_thw"][0].tolist()
        merge = config.vision_config.spatial_merge_size
        return [t, h // merge, w // merge]

    def video_features(self, model, inputs):
        out = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
        return VideoFeatures(torch.cat(out.pooler_output))

    def positions(self, model, inputs):
        """Computed once on the full sequence, as ``generate`` does at prefill (``get_rope_index``)."""
        known = ("mm_token_type_ids", "video_grid_thw", "second_per_grid_ts", "attention_mask")
        positions, delta = model.model.get_rope_index(inputs["input_ids"], **{k: inputs[k] for k in known if k in inputs})
        return positions, int(delta)

    def reset(self, model):
        model.model.rope_deltas = None


class LlavaOnevisionAdapter(Adapter):
    """LLaVA-OneVision: SigLIP features of each frame pooled 2×2, one learned newline vector after the last
    frame, and plain 1-D positions (its language model is Qwen2)."""

    model_types = ("llava_onevision",)

    @property
    def model_class(self):
        from transformers import LlavaOnevisionForConditionalGeneration

        return LlavaOnevisionForConditionalGeneration

    def video_mask(self, config, input_ids):
        """Every video slot but the last, which holds the newline vector: no place in the clip."""
        mask = self.video_slots(config, input_ids).clone()
        mask[mask.nonzero()[-1]] = False
        return mask

    def video_grid(self, config, inputs):
        side = math.ceil(config.vision_config.image_size // config.vision_config.patch_size / 2)
        return [inputs["pixel_values_videos"].shape[1], side, side]

    def video_features(self, model, inputs):
        frames = model.model.get_video_features(inputs["pixel_values_videos"]).pooler_output
        return VideoFeatures(frames.flatten(0, 1))


class Qwen3VLAdapter(QwenVLAdapter):
    """Qwen3-VL (dense): Qwen2.5-VL's processor call, video grid and ``get_rope_index`` call, and two changes.

    Timestamps: each frame's tokens follow a ``<t seconds>`` text of their own, and ``get_rope_index`` gives
    every frame its own (h, w) grid after that text; the positions and the rope delta still come from it in
    one call, and the rotary embedding interleaves t, h and w itself. DeepStack: the vision encoder's early
    layers add vectors to the hidden states of the first decoder layers at the video positions. A prefill
    from embeddings alone would lose them and differ from ``generate``, so the prompt carries them
    (``Deepstack``) and the prefill hands them to the language model as its own forward does; a pruned
    prompt drops the pruned tokens' rows with the tokens, which keeps pruned drafts and Self-SD exact.
    """

    model_types = ("qwen3_vl",)

    @property
    def model_class(self):
        from transformers import Qwen3VLForConditionalGeneration

        return Qwen3VLForConditionalGeneration

    def video_features(self, model, inputs):
        out = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
        return VideoFeatures(torch.cat(out.pooler_output), [torch.cat(layer) for layer in out.deepstack_features])


class InternVLAdapter(Adapter):
    """InternVL3 in transformers' own format (the ``-hf`` checkpoints): each frame is one image tile of its own,
    written ``FrameN: <img>`` + its context tokens + ``</img>``. The tile's patch grid is pixel-shuffled
    (2×2 patches into one vector at a ratio of 0.5) and projected; the vectors come out row by row, the
    (rows, columns) grid pruning spreads over. Plain 1-D positions (its language model is Qwen2.5)."""

    model_types = ("internvl",)

    @property
    def model_class(self):
        from transformers import InternVLForConditionalGeneration

        return InternVLForConditionalGeneration

    def video_slots(self, config, input_ids):
        return input_ids[0] == config.image_token_id

    def video_grid(self, config, inputs):
        vision = config.vision_config
        rows, cols = (int(s // p * config.downsample_ratio) for s, p in zip(vision.image_size, vision.patch_size))
        return [inputs["pixel_values"].shape[0], rows, cols]

    def video_features(self, model, inputs):
        tiles = model.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        return VideoFeatures(tiles.flatten(0, 1))


ADAPTERS: list[type[Adapter]] = [QwenVLAdapter, LlavaOnevisionAdapter, Qwen3VLAdapter, InternVLAdapter]


def adapter_for(model_type: str) -> Adapter:
    for cls in ADAPTERS:
        if model_type in cls.model_types:
            return cls(model_type)
    known = ", ".join(t for cls in ADAPTERS for t in cls.model_types)
    raise ModelError(f"model type '{model_type}' is not supported (supported: {known})")


@dataclass(frozen=True)
class LoadReport:
    """What loading one model took: its memory, where it sits, how long."""

    role: str
    name: str
    bytes: int
    dtype: str
    devices: tuple[str, ...]
    seconds: float

    def __str__(self) -> str:
        return (f"{self.role} {self.name}: {size(self.bytes)} in {self.dtype} on {', '.join(self.devices)} "
                f"(loaded in {self.seconds:.1f} s)")


@dataclass
class ModelPair:
    """A target, an optional draft of the same tokenizer, and the target's processor; ``draft_processor``
    where the draft's own reads frames at another size (a frame budget is a model's, as in its checkpoint:
    a small draft may read fewer pixels than its target), else None."""

    target: PreTrainedModel
    draft: PreTrainedModel | None
    processor: object
    adapter: Adapter
    target_name: str
    draft_name: str | None
    loads: list[LoadReport] = field(default_factory=list)
    draft_processor: object | None = None

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        """Where the inputs go: the target's input embeddings."""
        return self.target.get_input_embeddings().weight.device

    @property
    def devices(self) -> set[torch.device]:
        """Every device either model has weights on (a spread target: several GPUs)."""
        return {p.device for m in (self.target, self.draft) if m is not None for p in m.parameters()}

    @property
    def stop_ids(self) -> frozenset[int]:
        """End-of-answer ids, as ``generate`` reads them from the target's generation config."""
        eos = self.target.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return frozenset([eos] if isinstance(eos, int) else eos)

    @property
    def vocab(self) -> int:
        """How many ids the loop may draft and commit: those the tokenizer writes and every head scores.

        Checkpoints of one family pad their embeddings to different sizes (Qwen2.5-VL: 151,936 rows at 3B,
        152,064 at 7B, for 151,665 tokens). A padded row is no token: a draft that proposed one would hand the
        target an id it may not have, and a target that committed one would write what no text decodes to.
        """
        heads = [m.config.get_text_config().vocab_size for m in (self.target, self.draft) if m is not None]
        return min(len(self.tokenizer), *heads)

    def inputs(self, clip: Clip, prompt: str, processor=None) -> dict[str, torch.Tensor]:
        """The target's inputs, or those of ``processor`` (the draft's)."""
        if not prompt.strip():
            raise UserError("the prompt is empty: ask something about the video")
        inputs = self.adapter.inputs(processor or self.processor, clip, prompt)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}

    def prompt(self, model: PreTrainedModel, inputs: dict) -> Prompt:
        """What ``model`` (the target or the draft) reads at prefill for these inputs."""
        return self.adapter.prompt(model, inputs)

    def read(self, clip: Clip, prompt: str) -> Reading:
        """The request as the target reads it, with what a draft needs to read it as well."""
        inputs = self.inputs(clip, prompt)
        config = self.target.config
        own = None if self.draft_processor is None else self.inputs(clip, prompt, self.draft_processor)
        return Reading(inputs, self.prompt(self.target, inputs), self.adapter.video_mask(config, inputs["input_ids"]),
                       self.adapter.video_grid(config, inputs), own)

    def reset(self) -> None:
        for model in (self.target, self.draft):
            if model is not None:
                self.adapter.reset(model)


def _config(name: str, role: str, trust_remote_code: bool):
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        hint = "" if Path(name).exists() or "/" in name else " (not a folder here, nor a hub id)"
        raise ModelError(f"cannot load the {role} '{name}'{hint}: {str(err).splitlines()[0]}") from None


def read_configs(target: str, draft: str | None = None, trust_remote_code: bool = False) -> dict:
    """The pair's configs by role, read before any weight: a mistyped name or two families fail here, fast,
    before a caller gives up the pair it holds."""
    configs = {"target": _config(target, "target", trust_remote_code)}
    adapter = adapter_for(configs["target"].model_type)
    if draft is not None:
        configs["draft"] = _config(draft, "draft", trust_remote_code)
        kind = configs["draft"].model_type
        if adapter_for(kind).model_class is not adapter.model_class:
            raise ModelError(f"the draft is a '{kind}' model but the target is '{configs['target'].model_type}': use one family")
    return configs


def check_same_tokenizer(target_tok, draft_tok, target: str, draft: str) -> None:
    """Speculative decoding compares token ids, so both models must mean the same thing by each id."""
    if target_tok.get_vocab() != draft_tok.get_vocab():
        a, b = len(target_tok), len(draft_tok)
        raise ModelError(
            f"the draft '{draft}' and the target '{target}' use different tokenizers "
            f"({b} vs {a} tokens): pick a draft from the target's family"
        )


def read_processor(draft: str, trust_remote_code: bool = False):
    """The draft folder's processor, or its tokenizer alone where it ships no processor."""
    try:
        return AutoProcessor.from_pretrained(draft, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read the draft '{draft}''s processor: {str(err).splitlines()[0]}") from None


def own_frames(processor, theirs):
    """The draft's processor ``theirs`` where its video processor differs from the target's (e.g. fewer pixels
    a frame), else None. A draft folder without a video processor reads the target's frames."""
    video = getattr(theirs, "video_processor", None)
    if video is None or video.to_dict() == processor.video_processor.to_dict():
        return None
    return theirs


def load_model(adapter: Adapter, name: str, role: str, *, dtype, device_map, attn: str,
               trust_remote_code: bool = False) -> PreTrainedModel:
    try:
        model = adapter.model_class.from_pretrained(
            name, dtype=dtype, device_map=device_map, attn_implementation=attn, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, SafetensorError) as err:  # the last: a damaged weights file
        raise ModelError(f"cannot load the {role} '{name}': {str(err).splitlines()[0]}") from None
    return model.eval()


def _report(model: PreTrainedModel, role: str, name: str, seconds: float) -> LoadReport:
    devices = tuple(sorted({str(p.device) for p in model.parameters()}))
    dtype = str(model.dtype).removeprefix("torch.")
    return LoadReport(role, name, model.get_memory_footprint(), dtype, devices, seconds)


def load_pair(
    target: str,
    draft: str | None = None,
    *,
    device: str | None = None,
    dtype: str | torch.dtype = "auto",
    device_map: Placement | None = None,
    draft_device_map: Placement | None = None,
    attn: str = "sdpa",
    trust_remote_code: bool = False,
    progress: Callable[[float, str], None] | None = None,
) -> ModelPair:
    """Load from hub ids or local folders in HuggingFace format.

    ``dtype="auto"`` means bf16 on CUDA and fp32 on CPU. ``device_map`` (e.g. "auto") lets accelerate
    spread a large target over several GPUs; otherwise both models go to ``device``. The draft goes where
    the target goes unless ``draft_device_map`` (e.g. "cuda:3") says otherwise, and reads frames through its
    own processor where that sizes them otherwise than the target's (``own_frames``). Before any weight is
    read, the pair's size is checked against the free memory there (``lvspec.fit``). ``progress(fraction,
    message)`` hears each step; ``ModelPair.loads`` keeps what each model took.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if trust_remote_code:
        warnings.warn(
            f"trust_remote_code: running the Python code that ships with '{target}'"
            + (f" and '{draft}'" if draft else "") + " on this machine; use it only for checkpoints you trust",
            stacklevel=2,
        )
    tell = progress or (lambda fraction, message: None)
    configs = read_configs(target, draft, trust_remote_code)
    adapter = adapter_for(configs["target"].model_type)
    processor = AutoProcessor.from_pretrained(target, trust_remote_code=trust_remote_code)
    draft_processor = None
    if draft is not None:
        theirs = read_processor(draft, trust_remote_code)
        check_same_tokenizer(processor.tokenizer, getattr(theirs, "tokenizer", theirs), target, draft)
        draft_processor = own_frames(processor, theirs)

    names = {"target": target, "draft": draft}
    places = {"target": device_map or device, "draft": draft_device_map or device_map or device}
    per_param = torch.empty((), dtype=dtype).element_size()
    needs = []
    for role, config in configs.items():
        params = parameter_count(adapter.model_class, config)
        needs.append(Need(role, names[role], params, params * per_param, places[role]))
    problem = shortfall(needs, dtype)
    if problem:
        raise ModelError(problem)

    models, loads, done = {}, [], 0
    total = sum(n.bytes for n in needs)
    for need in needs:
        message = f"loading {need} onto {need.placement}"
        log.info(message)
        tell(done / total, message)
        start = time.perf_counter()
        models[need.role] = load_model(adapter, need.name, need.role, dtype=dtype, device_map=need.placement, attn=attn,
                                       trust_remote_code=trust_remote_code)
        loads.append(_report(models[need.role], need.role, need.name, time.perf_counter() - start))
        done += need.bytes
        log.info("loaded %s", loads[-1])
        tell(done / total, f"loaded {loads[-1]}")
    return ModelPair(models["target"], models.get("draft"), processor, adapter, target, draft, loads, draft_processor)
