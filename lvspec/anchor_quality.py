"""How well visual relevance finds the words that carry the video's facts, on the toy suite where they are known.

For each held-out clip the target answers alone (vanilla); its answer is then scored exactly as the decode
loop scores draft positions (the hidden state at the position whose input is the token, against the video
tokens), at every layer and top-N at once. The answer is cut into rounds of K tokens and the λ split flags
anchors in each; a flag is right when the token is a colour, shape, motion or count word. AUC is the
threshold-free view: the chance that a fact word outranks a phrasing word of the same answer. The best floor
τ is the single relevance threshold (across answers) that best tells fact words from phrasing on its own
(highest F1): the measurement that chooses `Settings.tau`.
"""

from __future__ import annotations

import torch

from .bench import Item
from .decode import Settings, generate
from .models import ModelPair
from .relevance import anchors, relevance, unit_rows
from .video import VideoLimits, read_video


@torch.inference_mode()
def answer_states(pair: ModelPair, clip, prompt: str, answer: list[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every layer's hidden states at the answer's positions, and the video tokens' decoder inputs."""
    model, inputs = pair.target, pair.inputs(clip, prompt)
    pair.reset()
    out = model(**inputs, use_cache=True, output_hidden_states=True, logits_to_keep=1)
    video = out.hidden_states[0][0][pair.adapter.video_mask(model.config, inputs["input_ids"]).to(model.device)]
    ids = torch.tensor([answer], device=model.device)
    states = model(input_ids=ids, cache=out.cache, use_cache=True, output_hidden_states=True,
                   logits_to_keep=1).hidden_states
    return [s[0] for s in states], unit_rows(video)


def anchor_table(pair: ModelPair, items: list[Item], settings: Settings, layers: list[int] | None = None,
                 top_ns: tuple[int, ...] = (1, 3, 10, 30), frames: int = 16) -> dict:
    from .toyworld.answers import TASKS, anchor_words, parse_prompt

    facts = anchor_words()
    n_layers = len(pair.adapter.decoder_layers(pair.target))
    layers = list(range(1, n_layers + 1)) if layers is None else layers
    rows = {(layer, n): {"tp": 0, "fp": 0, "fn": 0, "wins": 0.0, "pairs": 0, "scores": []}
            for layer in layers for n in top_ns}
    layer_used = settings.layer if settings.layer is not None else n_layers // 2  # the decode loop's
    tasks: dict[str, dict] = {}
    looks: dict[str, list[tuple[float, float]]] = {"colour": [], "shape": []}
    truths = []
    words = 0
    for item in items:
        clip = read_video(item.video, VideoLimits(max_frames=frames))
        trace = generate(pair, clip, item.prompt, "vanilla", settings)
        answer = [t.id for t in trace.tokens if t.id not in pair.stop_ids]
        if not answer:
            continue
        texts = [pair.tokenizer.decode([t]).strip().lower() for t in answer]
        truth = torch.tensor([text in facts for text in texts])
        words += len(answer)
        truths.append(truth)
        states, video = answer_states(pair, clip, item.prompt, answer)
        score, look = relevance(states[layer_used], video, settings.top_n)
        flags = torch.tensor(_flags(score.cpu(), settings))
        task = tasks.setdefault(TASKS[parse_prompt(item.scene, item.prompt).kind],
                                {"answers": 0, "tokens": 0, "visual": 0, "tp": 0, "fp": 0})
        task["answers"] += 1
        task["tokens"] += len(answer)
        task["visual"] += int(truth.sum())
        task["tp"] += int((flags & truth).sum())
        task["fp"] += int((flags & ~truth).sum())
        if item.masks is not None:
            for kind, shares in on_object(pair, clip, item, texts, look.cpu()).items():
                looks[kind] += shares
        for layer in layers:
            for n in top_ns:
                score = relevance(states[layer], video, n)[0].cpu()
                flags = torch.tensor(_flags(score, settings))
                r = rows[(layer, n)]
                r["tp"] += int((flags & truth).sum())
                r["fp"] += int((flags & ~truth).sum())
                r["fn"] += int((~flags & truth).sum())
                r["scores"].append(score)
                if truth.any() and (~truth).any():
                    diff = score[truth][:, None] - score[~truth][None, :]
                    r["wins"] += float((diff > 0).sum() + 0.5 * (diff == 0).sum())
                    r["pairs"] += diff.numel()
    table = []
    truth = torch.cat(truths) if truths else torch.zeros(0, dtype=torch.bool)
    for (layer, n), r in rows.items():
        flagged, true = r["tp"] + r["fp"], r["tp"] + r["fn"]
        table.append({"layer": layer, "top_n": n,
                      "precision": r["tp"] / flagged if flagged else None,
                      "recall": r["tp"] / true if true else None,
                      "auc": r["wins"] / r["pairs"] if r["pairs"] else None,
                      **best_floor(torch.cat(r["scores"]) if r["scores"] else torch.zeros(0), truth)})
    by_task = {name: {"answers": t["answers"], "tokens": t["tokens"], "visual_share": t["visual"] / t["tokens"],
                      "precision": t["tp"] / (t["tp"] + t["fp"]) if t["tp"] + t["fp"] else None,
                      "recall": t["tp"] / t["visual"] if t["visual"] else None} for name, t in tasks.items()}
    return {"target": pair.target_name, "items": len(items), "answer_tokens": words, "k": settings.k,
            "lam": settings.lam, "tau": settings.tau, "layer": layer_used, "top_n": settings.top_n, "rows": table,
            "tasks": by_task, "on_object": {kind: _looks(v) for kind, v in looks.items()}}


def _looks(words: list[tuple[float, float]]) -> dict:
    """Mean on-object share of a fact type's words, the mean of its ceiling, and the share of the ceiling
    reached (each word's share over its own ceiling): the last means the same whatever the objects' size."""
    if not words:
        return {"words": 0, "share": None, "ceiling": None, "of_ceiling": None}
    share, ceiling = (sum(x) / len(words) for x in zip(*words))
    reached = [s / c for s, c in words if c]
    return {"words": len(words), "share": share, "ceiling": ceiling,
            "of_ceiling": sum(reached) / len(reached) if reached else None}


def _flags(score: torch.Tensor, settings: Settings) -> list[bool]:
    """The anchor flags the decode loop would give an answer's positions, cut into rounds of K."""
    return [f for i in range(0, len(score), settings.k)
            for f in anchors(score[i : i + settings.k].tolist(), settings.lam, settings.tau)]


def on_object(pair: ModelPair, clip, item: Item, texts: list[str], look: torch.Tensor
              ) -> dict[str, list[tuple[float, float]]]:
    """For every colour and shape word of an answer: the share of its top-N video tokens (``look``, per
    answer position) that lie on the object the word names (its mask covers ≥ `ON_OBJECT` of the token), and
    the most that share can be: an object that covers fewer than N tokens leaves the rest of any top-N off it."""
    from .toyworld.data import ON_OBJECT, object_shares

    grid = pair.adapter.video_grid(pair.target.config, pair.inputs(clip, item.prompt))
    shares = object_shares(item.masks[clip.indices], len(item.scene.shapes), tuple(grid))
    names = {}
    for i, spec in enumerate(item.scene.shapes, start=1):
        names[spec.colour], names[spec.shape] = ("colour", i), ("shape", i)
    found: dict[str, list[tuple[float, float]]] = {"colour": [], "shape": []}
    for text, tokens in zip(texts, look):
        if text in names:
            kind, label = names[text]
            on = shares[:, label] >= ON_OBJECT
            found[kind].append((float(on[tokens].float().mean()), min(1.0, int(on.sum()) / len(tokens))))
    return found


def best_floor(score: torch.Tensor, truth: torch.Tensor) -> dict:
    """The relevance threshold τ whose flag ``score ≥ τ`` has the highest F1 against ``truth``, and its
    precision and recall (τ halfway between the two scores it separates)."""
    if not truth.any():
        return {"tau_best": None, "tau_precision": None, "tau_recall": None}
    order = torch.argsort(score, descending=True)
    hits = truth[order].float().cumsum(0)
    flagged = torch.arange(1, len(score) + 1)
    f1 = 2 * hits / (flagged + truth.sum())
    best = int(f1.argmax())
    ranked = score[order]
    tau = float(ranked[best] + ranked[best + 1]) / 2 if best + 1 < len(ranked) else float(ranked[best])
    return {"tau_best": round(tau, 4), "tau_precision": float(hits[best] / (best + 1)),
            "tau_recall": float(hits[best] / truth.sum())}


def print_anchor_table(table: dict) -> None:
    from .toyworld.data import ON_OBJECT

    def pct(x):
        return "—" if x is None else f"{100 * x:.1f}%"

    print(f"anchor flag vs true visual words: {table['items']} answers, {table['answer_tokens']} tokens, "
          f"rounds of K={table['k']}, λ={table['lam']}")
    print(f"{'layer':>5} {'top-N':>5} {'precision':>9} {'recall':>7} {'AUC':>6}   {'best τ':>7} {'precision':>9} "
          f"{'recall':>7}")
    for r in table["rows"]:
        tau = "—" if r["tau_best"] is None else f"{r['tau_best']:.3f}"
        print(f"{r['layer']:>5} {r['top_n']:>5} {pct(r['precision']):>9} {pct(r['recall']):>7} {pct(r['auc']):>6}   "
              f"{tau:>7} {pct(r['tau_precision']):>9} {pct(r['tau_recall']):>7}")
    print(f"\nper task, at layer {table['layer']} and top-{table['top_n']}: share of true visual words in the "
          "target's answers, and the anchor flag against them")
    print(f"{'task':<10} {'answers':>7} {'tokens':>7} {'visual':>7} {'precision':>9} {'recall':>7}")
    for name, t in table["tasks"].items():
        print(f"{name:<10} {t['answers']:>7} {t['tokens']:>7} {pct(t['visual_share']):>7} {pct(t['precision']):>9} "
              f"{pct(t['recall']):>7}")
    print(f"\nwhere colour and shape words look: share of their top-{table['top_n']} video tokens on the object they "
          f"name (covering ≥ {ON_OBJECT:.0%} of the token); ceiling: the most it can be where an object covers fewer "
          f"tokens than top-{table['top_n']}; of ceiling: each word's share over its own ceiling")
    print(f"{'':<10} {'words':>5} {'on object':>9} {'ceiling':>8} {'of ceiling':>10}")
    for kind, o in table["on_object"].items():
        print(f"{kind:<10} {o['words']:>5} {pct(o['share']):>9} {pct(o['ceiling']):>8} {pct(o['of_ceiling']):>10}")
