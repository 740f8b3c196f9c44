"""Train the embedded target or draft from scratch on the synthetic world (CPU; bf16 autocast where it is fast).

Plain loop, nanoGPT style: AdamW, linear warm-up then cosine decay, checkpoints that resume exactly
(batches are a function of the step), a loss curve saved as PNG, the result saved with
``save_pretrained`` beside the processor so it loads like any hub checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from ..relevance import relevance, unit_rows
from .answers import STYLES, TASKS, answer, corpus, sample_prompt
from .data import INIT, OBJECT_HEADS, Batches, Mix, collate, make_sample, model_inputs
from .vocab import build_processor, build_tokenizer, extend_tokenizer, tiny_config
from .world import sample_scene

# Sized so that one target decode step costs ≳ 6 draft steps on a 2-core CPU (as 32B vs 7B on a GPU),
# and the draft is clearly weaker at reading the video.
SIZES = {
    "target": dict(hidden=256, layers=12, heads=4, kv_heads=2, vision_hidden=128, vision_depth=4),
    "draft": dict(hidden=128, layers=1, heads=4, kv_heads=2, vision_hidden=64, vision_depth=2),
}


@dataclass
class TrainConfig:
    role: str = "target"  # "target" or "draft": model size and answer wording
    out: str = "assets/models/toy-target"
    work: str = "runs/toy-target"  # checkpoints and logs
    tokenizer_from: str | None = None  # a saved processor folder; None = build one
    init: str | None = None  # a saved model folder to continue from (its processor comes with it)
    new_vision: bool = False  # with init: a fresh vision tower of this role's size, the language model from init
    stage: str = "full"  # "full": every weight, every loss; "vision": the vision tower alone, on the read-out
    max_turns: int = 4  # questions per clip in a training conversation
    multi_shape: float | None = None  # share of clips with 2–3 shapes (None: the world's 2/3)
    describe: float | None = None  # share of questions asking for a short description (None: the world's 0.15)
    choice: float | None = None  # share of multiple-choice questions (None: the world's 0.12)
    detailed: float | None = None  # share of requests for a detailed description (None: the world's 0.3)
    medium: float | None = None  # share of open questions answered in a sentence or two (None: the world's 0.15)
    mixed: float = 0.0  # share of detailed descriptions begun in the other style's words (`data.Mix`)
    mixed_medium: float = 0.0  # share of medium answers begun in the other style's words (`data.Mix`)
    interleave: float = 0.0  # share of the mixed descriptions worded sentence by sentence by either style (`data.Mix`)
    given_facts: bool = False  # train the fact words inside a mixed description's given prefix too (`data.Mix`)
    repeat_choice: bool = False  # several multiple-choice questions per clip (`data.Mix`)
    letter_drills: int = 0  # per clip, multiple-choice turns given an option and trained on its letter (`data.Mix`)
    render_styles: str = "1"  # how often each renderer (default, alt, small) draws a clip, e.g. "0.5,0.2,0.3"
    extend_vocab: bool = False  # give the long-form tasks' words their own tokens (`vocab.extend_tokenizer`)
    steps: int = 3000
    stop_at: int | None = None  # stop and save at this step, the learning-rate schedule still that of `steps`
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 100
    seed: int = 0
    checkpoint_every: int = 250
    vocab_size: int = 640
    max_side: int = 112  # frames are resized to at most this many pixels a side (a new processor only)
    centre: bool = True  # centre the video features at init (a fresh model only)
    fact_weight: float = 5.0  # loss weight of fact words (colour, shape, motion, count) against phrasing
    align_weight: float = 1.0  # weight of the relevance-alignment loss (0 = off)
    look_weight: float = 0.2  # weight of the loss on where colour and shape words look (`look_loss`; 0 = off)
    readout_weight: float = 1.0  # weight of the training-only read-out of what each object is (0 = off)
    top_n: int = 10  # video tokens averaged into relevance, as the decode loop's default
    threads: int = 2


def lr_at(step: int, c: TrainConfig) -> float:
    if step < c.warmup:
        return c.lr * (step + 1) / c.warmup
    progress = (step - c.warmup) / max(1, c.steps - c.warmup)
    return c.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def processor_for(c: TrainConfig):
    if c.init or c.tokenizer_from:
        processor = AutoProcessor.from_pretrained(c.tokenizer_from or c.init)
    else:
        tokenizer = build_tokenizer(corpus(20000, np.random.default_rng(c.seed)), vocab_size=c.vocab_size)
        processor = build_processor(tokenizer, max_side=c.max_side)
    if c.extend_vocab:
        processor.tokenizer = extend_tokenizer(processor.tokenizer, *longform_texts())
    return processor


def longform_texts(n: int = 3000, seed: int = 0) -> tuple[list[str], list[str]]:
    """Prompts and answers of the long-form tasks (detailed, medium, choice) in both styles, and of the
    other tasks: the words to give tokens, and the words whose tokens must not change."""
    rng = np.random.default_rng(seed)
    new, old = [], []
    for _ in range(n):
        scene = sample_scene(rng)
        prompt, kind = sample_prompt(scene, rng)
        for style in STYLES:
            (new if TASKS[kind] in LONG_TASKS else old).append(f"{prompt}\n{answer(scene, prompt, rng, style)}")
    return new, old


LONG_TASKS = ("detailed", "medium", "choice")


@torch.no_grad()
def grow_vocabulary(model, old_tokenizer, tokenizer) -> None:
    """Embedding rows for the tokens ``tokenizer`` adds to ``old_tokenizer``, each the mean of the rows of
    the pieces the old tokenizer spelled it with (the head is tied to the embedding)."""
    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    weight = model.get_input_embeddings().weight
    for i in range(old, len(tokenizer)):
        pieces = old_tokenizer(tokenizer.decode([i]), add_special_tokens=False)["input_ids"]
        weight[i] = weight[pieces].mean(0)


@torch.no_grad()
def centre_video_features(model, batch: dict) -> None:
    """Data-dependent init: shift the vision merger's output bias so video features average zero.

    At random init every video token is dominated by one shared vector (the background's patch response),
    so after the LLM's normalisation all video tokens look alike (mean cosine ≈ 0.99) and the few
    differences that carry colour, shape and place train very slowly. Removing the shared part exposes them.
    """
    features = model.model.get_video_features(batch["pixel_values_videos"], batch["video_grid_thw"]).pooler_output
    model.model.visual.merger.mlp[-1].bias -= torch.cat(list(features)).mean(0)


class ObjectReadout(torch.nn.Module):
    """Training only (never saved): names every object's colour, shape and motion from its pooled video
    features (`data.object_targets`), one linear head per fact.

    Trained from scratch through the answers alone, the vision tower collapses within a few hundred steps:
    every clip maps to one large constant vector, and the language model learns the answers' phrasing and
    guesses the facts. Asked directly what each object is, the tower learns to see first (colour within a
    hundred steps, shape and motion over a few hundred), and reading a fact becomes what small language
    models learn fast: copying from the tokens that show it. Pooling over the object (not one label per
    token) leaves each token free to carry what it shows best, an edge or a corner of the shape.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.heads = torch.nn.ModuleDict({head: torch.nn.Linear(dim, len(names)) for head, names in OBJECT_HEADS.items()})

    def forward(self, video: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean cross-entropy over the heads, and each head's accuracy on this batch."""
        pooled = batch["object_weights"] @ video.float()
        losses, accuracy = [], {}
        for head, linear in self.heads.items():
            logits = linear(pooled)
            losses.append(F.cross_entropy(logits, batch[f"object_{head}"]))
            accuracy[head] = (logits.argmax(1) == batch[f"object_{head}"]).float().mean().item()
        return torch.stack(losses).mean(), accuracy


def training_loss(model, batch: dict, c: TrainConfig,
                  readout: ObjectReadout | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss to minimise and its parts: next-token loss on the answers with fact words weighted
    (``answer``), the object read-out (``readout``, with its per-head accuracies), the relevance ranking
    (``align``) and where a colour or shape word looks (``look``).

    Phrasing dominates an answer's tokens, and a small model learns it long before it learns to read the
    clip; weighting the few fact words (``fact_weight``) makes looking at the video pay from the first steps.
    A reply's first token weighs as much: it picks the task's form (a caption or a detailed description
    open alike but for that token), and a weighted cross-entropy's optimum scales each candidate by its
    weight, so openings on a count word ("Three shapes can be seen.") outweighed every other opening and a
    request for detail was answered with a caption.

    Alignment (``align_weight``): LVSpec scores a token by the cosine of the target's middle-layer state to
    the video tokens, relying on what large video LLMs show, that visual words sit closer to the video than
    phrasing does. A model trained from scratch on a toy world does not grow that geometry by itself, so
    the target is taught it: within each answer every fact word's relevance should exceed every other
    word's (a pairwise logistic ranking loss on the same score ``lvspec.relevance`` computes), and a colour
    or shape word's nearest video tokens should be those of the object it names (`look_loss`).
    """
    out = model(**model_inputs(batch), output_hidden_states=True)
    labels = batch["labels"][:, 1:]
    loss = F.cross_entropy(out.logits[:, :-1].float().flatten(0, 1), labels.flatten(), ignore_index=-100,
                           reduction="none")
    heavy = batch["fact_mask"] | batch["opening_mask"]
    weights = (labels != -100).float() * torch.where(heavy[:, 1:], c.fact_weight, 1.0)
    parts = {"answer": (loss * weights.flatten()).sum() / weights.sum()}
    accuracy = {}
    if readout is not None:
        video = out.hidden_states[0][batch["input_ids"] == model.config.video_token_id]
        parts["readout"], accuracy = readout(video, batch)
    layer = len(out.hidden_states) // 2  # the decode loop's default: the middle decoder layer
    if c.align_weight:
        parts["align"] = alignment_loss(model, batch, out.hidden_states[0], out.hidden_states[layer], c.top_n)
    if c.look_weight:
        parts["look"] = look_loss(model, batch, out.hidden_states[0], out.hidden_states[layer])
    total = (parts["answer"] + c.readout_weight * parts.get("readout", 0.0)
             + c.align_weight * parts.get("align", 0.0) + c.look_weight * parts.get("look", 0.0))
    return total, {name: part.item() for name, part in parts.items()} | accuracy


def vision_loss(model, batch: dict, readout: ObjectReadout) -> tuple[torch.Tensor, dict[str, float]]:
    """The object read-out from the vision tower's output alone: teaches it to see before the language
    model learns to read it (a small tower trained only through the answers learns too slowly)."""
    features = model.model.get_video_features(batch["pixel_values_videos"], batch["video_grid_thw"]).pooler_output
    loss, accuracy = readout(torch.cat(list(features)), batch)
    return loss, {"readout": loss.item()} | accuracy


def build_model(c: TrainConfig, processor) -> Qwen2_5_VLForConditionalGeneration:
    """A fresh model of the role's size, a saved one to continue, or a saved language model with a new
    vision tower of the role's size (``new_vision``)."""
    if c.init and not c.new_vision:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(c.init, dtype=torch.float32)
        if model.get_input_embeddings().weight.shape[0] < len(processor.tokenizer):
            grow_vocabulary(model, AutoProcessor.from_pretrained(c.init).tokenizer, processor.tokenizer)
        return model
    model = Qwen2_5_VLForConditionalGeneration(tiny_config(processor.tokenizer, **SIZES[c.role]))
    if c.init:
        saved = Qwen2_5_VLForConditionalGeneration.from_pretrained(c.init, dtype=torch.float32).state_dict()
        language = {k: v for k, v in saved.items() if not k.startswith("model.visual.")}
        missing, unexpected = model.load_state_dict(language, strict=False)
        assert not unexpected and all(k.startswith("model.visual.") for k in missing), (missing, unexpected)
    return model


def alignment_loss(model, batch: dict, embeds: torch.Tensor, states: torch.Tensor, top_n: int) -> torch.Tensor:
    """Pairwise logistic ranking of every fact word's relevance above every other answer word's."""
    video_id = model.config.video_token_id
    eos = model.config.text_config.eos_token_id
    terms = []
    for ids, replies, fact, row_embeds, row_states in zip(batch["input_ids"], batch["answer_mask"],
                                                          batch["fact_mask"], embeds, states):
        other = replies & ~fact & (ids != eos)
        if not fact.any() or not other.any():
            continue
        score, _ = relevance(row_states[fact | other], unit_rows(row_embeds[ids == video_id]), top_n)
        is_fact = fact[fact | other]
        terms.append(F.softplus(10.0 * (score[~is_fact][None, :] - score[is_fact][:, None])).mean())
    return torch.stack(terms).mean() if terms else torch.zeros(())


def look_loss(model, batch: dict, embeds: torch.Tensor, states: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Cross-entropy of where a colour or shape word looks (a softmax of its cosines to the clip's video tokens)
    against where its object is (the object's share of each token, from the renderer's masks): so that the
    video tokens nearest the word, the ones the app's heat view shows, lie on the object it names."""
    video_id = model.config.video_token_id
    weights = batch["object_weights"]
    start, terms = 0, []
    for ids, objects, row_embeds, row_states in zip(batch["input_ids"], batch["token_objects"], embeds, states):
        is_video = ids == video_id
        n = int(is_video.sum())
        named = objects >= 0
        if named.any():
            cos = unit_rows(row_states[named]) @ unit_rows(row_embeds[is_video]).T
            where = weights[objects[named], start : start + n]
            terms.append(-(where * F.log_softmax(cos / temperature, dim=-1)).sum(-1).mean())
        start += n
    return torch.stack(terms).mean() if terms else torch.zeros(())


def plot_loss(history: list[tuple[int, float]], path: Path, title: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = zip(*history)
    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    ax.plot(steps, losses, color="#c7d2e0", lw=0.8, label="batch")
    ax.plot(steps[window - 1 :], smooth, color="#1f4e8c", lw=1.6, label=f"mean of {window}")
    ax.set(xlabel="step", ylabel=ylabel, title=title, yscale="log")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def loss_label(c: TrainConfig) -> str:
    if c.stage == "vision":
        return "object read-out loss (nats/object)"
    return "weighted answer loss (nats/token)"


def native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX-512 and newer), so bf16 autocast pays; elsewhere training
    stays in fp32. Without those instructions a bf16 convolution falls back to an emulated kernel: on an AVX2
    CPU one step of the target took 150 s under bf16 autocast against 15 s in fp32 (the vision tower's 3-D
    patch convolution, backward)."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def train(c: TrainConfig) -> Path:
    torch.set_num_threads(c.threads)
    work, out = Path(c.work), Path(c.out)
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / "checkpoint.pt"
    processor = processor_for(c)
    torch.manual_seed(c.seed)
    model = build_model(c, processor)
    readout = ObjectReadout(model.config.text_config.hidden_size) if c.readout_weight else None
    trained = model.model.visual if c.stage == "vision" else model
    model.requires_grad_(False)
    trained.requires_grad_(True)
    params = [*trained.parameters(), *(readout.parameters() if readout else [])]
    opt = torch.optim.AdamW(params, lr=c.lr, betas=(0.9, 0.95), weight_decay=0.05)
    start, history = 0, []
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ckpt["model"])
        if readout is not None:
            readout.load_state_dict(ckpt["readout"])
        opt.load_state_dict(ckpt["optimizer"])
        start, history = ckpt["step"], ckpt["history"]
        processor = AutoProcessor.from_pretrained(work / "processor")
    else:
        processor.save_pretrained(work / "processor")
        if c.centre and (not c.init or c.new_vision):
            centre_video_features(model, collate(processor, [make_sample((INIT, c.seed, i), c.role, c.max_turns)
                                                             for i in range(64)]))

    style = c.role
    mix = Mix(multi_shape=c.multi_shape, describe=c.describe, choice=c.choice, detailed=c.detailed, medium=c.medium,
              mixed=c.mixed, mixed_medium=c.mixed_medium, interleave=c.interleave, given_facts=c.given_facts,
              render_styles=tuple(float(w) for w in c.render_styles.split(",")), repeat_choice=c.repeat_choice,
              letter_drills=c.letter_drills)
    end = c.stop_at or c.steps
    batches = Batches(processor, c.seed, c.batch_size, style, c.max_turns, start, end, mix)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=1, prefetch_factor=4)
    model.train()
    bar = tqdm(loader, initial=start, total=end, desc=f"train {c.role}", dynamic_ncols=True)
    t0, bf16 = time.time(), native_bf16()
    for step, batch in enumerate(bar, start=start):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, c)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if c.stage == "vision":
                loss, parts = vision_loss(model, batch, readout)
            else:
                loss, parts = training_loss(model, batch, c, readout)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        history.append((step, parts["readout" if c.stage == "vision" else "answer"]))
        bar.set_postfix({name: f"{value:.3f}" for name, value in parts.items()})
        if (step + 1) % c.checkpoint_every == 0 or step + 1 == end:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step + 1, "history": history,
                     "readout": readout.state_dict() if readout else None}
            torch.save(state, work / "checkpoint.tmp")
            (work / "checkpoint.tmp").replace(ckpt_path)
            plot_loss(history, work / "loss.png", f"toy-{c.role}", loss_label(c))

    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out)  # half the bytes to ship; loads back in any dtype
    processor.save_pretrained(out)
    plot_loss(history, out / "loss.png", f"toy-{c.role}", loss_label(c))
    log = {"config": asdict(c), "seconds_this_run": round(time.time() - t0, 1), "final_loss": history[-1][1],
           "parameters": sum(p.numel() for p in model.parameters())}
    if c.init:  # the stages that produced the starting point, oldest first
        log["continues"] = json.loads((Path(c.init) / "training.json").read_text())
    (out / "training.json").write_text(json.dumps(log, indent=1))
    return out
