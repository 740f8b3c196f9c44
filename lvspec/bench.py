"""Every method on every item of a suite, with interleaved repeats: speed and retention side by side.

Speedups are ratios measured in the same run (vanilla runs beside the others on the same items), per
decoded token so that answers of different lengths compare fairly. Retention is how much of the target's
own quality a method keeps: on the toy suite the attribute accuracy relative to vanilla's, on any suite
the token F1 of the answer against vanilla's.
"""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .assisted import notes as hf_notes
from .decode import METHODS, Settings, generate, warm_up
from .errors import UserError
from .models import ModelPair
from .trace import PHASES, RunTrace
from .video import VideoLimits, read_video


@dataclass
class Item:
    video: str
    prompt: str
    scene: object | None = None  # a toy-world Scene: the reference facts (None: compare with vanilla only)
    masks: object | None = None  # toy world: (T, H, W) per source frame, which object covers each pixel


def file_suite(path: str | Path) -> list[Item]:
    """A JSONL file, one ``{"video": PATH, "prompt": TEXT}`` per line; video paths relative to the file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the suite {path}: {e}") from None
    items = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                row = json.loads(line)
                items.append(Item(str((path.parent / row["video"]).resolve()), row["prompt"]))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise UserError(f"{path.name} line {n}: expected {{\"video\": …, \"prompt\": …}} ({e})") from None
    return items


def read_result(path: str | Path) -> dict:
    """A bench or sweep result as ``--json`` writes it, or a UserError that says why the file is not one."""
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
        for label, config in result["configs"].items():
            figures = result["methods"][label]
            needed = {"method", "lam"} | ({"window"} if config["method"] == "lvspec" else set())
            if not needed <= config.keys() or not {"speedup", "retention"} <= figures.keys():
                raise KeyError(f"config {label!r} lacks {sorted(needed - config.keys())} or its figures")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{Path(path).name} is not a bench or sweep result: {e}") from None
    return result


BENCH_METHODS = (*METHODS, "hf")  # hf: transformers' generate(assistant_model=draft), the exact-match peer


def run_method(pair: ModelPair, clip, prompt: str, method: str, settings: Settings) -> RunTrace:
    if method == "hf":
        from .assisted import generate_assisted

        return generate_assisted(pair, clip, prompt, settings)
    return generate(pair, clip, prompt, method, settings)


def rouge_l(reference: str, other: str) -> float:
    """ROUGE-L F1: the longest common word subsequence against both lengths (lower-cased)."""
    ref, oth = reference.lower().split(), other.lower().split()
    if not ref or not oth:
        return float(ref == oth)
    row = [0] * (len(oth) + 1)
    for r in ref:
        prev = 0
        for j, o in enumerate(oth, 1):
            prev, row[j] = row[j], prev + 1 if r == o else max(row[j], row[j - 1])
    return _f1(row[-1], len(ref), len(oth))


def token_f1(reference: str, other: str) -> float:
    """Bag-of-words F1 of ``other`` against ``reference`` (SQuAD style, lower-cased)."""
    ref, oth = Counter(reference.lower().split()), Counter(other.lower().split())
    if not ref or not oth:
        return float(ref == oth)
    return _f1(sum((ref & oth).values()), sum(ref.values()), sum(oth.values()))


def _f1(common: int, n_reference: int, n_other: int) -> float:
    """F1 of ``common`` words shared by a reference of ``n_reference`` words and an answer of ``n_other``."""
    if not common:
        return 0.0
    precision, recall = common / n_other, common / n_reference
    return 2 * precision * recall / (precision + recall)


@dataclass
class MethodFigures:
    mean_accepted_length: float
    accepted_ceiling: float  # the E[T] of a draft accepted in full on the same answers (RunTrace.accepted_ceiling)
    tokens_per_s: float
    speedup: float | None
    retention: float | None
    token_f1: float | None
    rouge_l: float | None
    facts_kept: float | None  # share of answers whose parsed facts equal vanilla's (toy suite)
    accuracy: float | None  # attribute accuracy (toy suite)
    shares: dict[str, float] = field(default_factory=dict)
    # Drafted positions where the draft's token was not the target's, per 100 answer tokens, and the share of
    # them the method kept (loose or shifted): what bounds exact-match SD, and what a looser rule buys back.
    mismatches: float | None = None
    salvaged: float | None = None


def _decode_s(trace: RunTrace) -> float:
    return trace.timing.total_s - trace.timing.prefill_s


def figures(runs: dict[str, list[list[RunTrace]]], items: list[Item]) -> dict[str, MethodFigures]:
    """``runs[method][item]`` holds that item's repeats; the first repeat is the one judged for quality."""
    from .toyworld.answers import score, stated

    vanilla = runs.get("vanilla")
    toy = all(item.scene is not None for item in items)

    def per_token_s(method: str) -> float:
        traces = [t for repeats in runs[method] for t in repeats]
        return sum(_decode_s(t) for t in traces) / max(1, sum(t.stats.new_tokens - 1 for t in traces))

    def accuracy(method: str) -> float:
        verdicts = [ok for item, repeats in zip(items, runs[method])
                    for ok in score(item.scene, item.prompt, repeats[0].text).values()]
        return sum(verdicts) / max(1, len(verdicts))

    reference_accuracy = accuracy("vanilla") if vanilla and toy else None
    reference_s = per_token_s("vanilla") if vanilla else None
    out = {}
    for method, per_item in runs.items():
        traces = [t for repeats in per_item for t in repeats]
        firsts = [repeats[0] for repeats in per_item]
        total = sum(t.timing.total_s for t in traces) or 1.0
        shares = {p: sum(getattr(t.timing, f"{p}_s") for t in traces) / total for p in PHASES}
        passes = sum(t.stats.target_passes for t in traces)
        committed = sum(t.committed for t in traces)
        seconds = per_token_s(method)
        fig = MethodFigures(
            mean_accepted_length=committed / max(1, passes),
            accepted_ceiling=committed / max(1, sum(t.fewest_passes for t in traces)),
            tokens_per_s=1.0 / seconds if seconds else 0.0,
            speedup=reference_s / seconds if vanilla and seconds else None,
            retention=None,
            token_f1=None,
            rouge_l=None,
            facts_kept=None,
            accuracy=accuracy(method) if toy else None,
            shares=shares,
        )
        if vanilla:
            refs = [repeats[0].text for repeats in vanilla]
            fig.token_f1 = sum(token_f1(r, t.text) for r, t in zip(refs, firsts)) / len(firsts)
            fig.rouge_l = sum(rouge_l(r, t.text) for r, t in zip(refs, firsts)) / len(firsts)
            fig.facts_kept = sum(stated(item.prompt, r) == stated(item.prompt, t.text)
                                 for item, r, t in zip(items, refs, firsts)) / len(firsts)
            fig.retention = fig.token_f1
            if toy:
                fig.retention = fig.accuracy / reference_accuracy if reference_accuracy else None
        fig.mismatches, fig.salvaged = mismatch_figures(firsts)
        out[method] = fig
    return out


def mismatch_figures(traces: list[RunTrace]) -> tuple[float | None, float | None]:
    """Mismatched drafted positions per 100 answer tokens, and the share of them kept (None without drafts)."""
    verdicts = [v for t in traces for r in t.rounds for v in r.verdicts if v in ("loose", "shift", "reject")]
    if not any(r.draft_ids for t in traces for r in t.rounds):
        return None, None
    tokens = sum(t.stats.new_tokens for t in traces)
    kept = sum(v != "reject" for v in verdicts)
    return 100 * len(verdicts) / max(1, tokens), kept / len(verdicts) if verdicts else None


Configs = dict[str, tuple[str, Settings]]  # label -> (method, settings); "vanilla" is the reference


def run(pair: ModelPair, items: list[Item], configs: Configs, repeats: int = 1, frames: int = 16,
        progress=None) -> dict:
    """Every config on every item. Configs are interleaved inside each repeat of each item (in reverse
    order on odd repeats), so that a drifting machine speed hits all of them alike."""
    runs: dict[str, list[list[RunTrace]]] = {label: [] for label in configs}
    warm_up(pair)
    for item in items:
        clip = read_video(item.video, VideoLimits(max_frames=frames))
        for label in configs:
            runs[label].append([])
        for r in range(repeats):
            for label in configs if r % 2 == 0 else reversed(configs):
                method, settings = configs[label]
                runs[label][-1].append(run_method(pair, clip, item.prompt, method, settings))
        if progress:
            progress()
    table = figures(runs, items)
    result = {
        "configs": {label: {"method": m, **asdict(s)} for label, (m, s) in configs.items()},
        "target": pair.target_name,
        "draft": pair.draft_name,
        "repeats": repeats,
        "methods": {label: asdict(f) for label, f in table.items()},
        "notes": hf_notes(pair) if any(m == "hf" for m, _ in configs.values()) else [],  # what hf's figures mean
        "items": [
            {"video": item.video, "prompt": item.prompt,
             **{label: {"text": runs[label][i][0].text,
                        "mean_accepted_length": runs[label][i][0].stats.mean_accepted_length}
                for label in configs}}
            for i, item in enumerate(items)
        ],
    }
    if all(item.scene is not None for item in items):
        result["by_task"] = {
            task: {"items": len(subset), "methods": {m: asdict(f) for m, f in figures(runs_of, subset).items()}}
            for task, (runs_of, subset) in by_task(runs, items).items()
        }
    return result


def by_task(runs: dict[str, list[list[RunTrace]]], items: list[Item]) -> dict[str, tuple[dict, list[Item]]]:
    """The runs and items of each task (toy scenes), as the paper's table has them: detailed descriptions,
    short descriptions, medium answers, short QA, multiple choice. Where a method's E[T] comes from: a
    one-word answer bounds it as a paragraph does not."""
    from .toyworld.answers import TASKS, parse_prompt

    tasks: dict[str, list[int]] = {task: [] for task in dict.fromkeys(TASKS.values())}
    for i, item in enumerate(items):
        tasks[TASKS[parse_prompt(item.scene, item.prompt).kind]].append(i)
    return {task: ({label: [per_item[i] for i in rows] for label, per_item in runs.items()}, [items[i] for i in rows])
            for task, rows in tasks.items() if rows}


PAPER_RULE = dict(lam=0.7, min_ratio=0.0, tau=None, window=3)  # LVSpec as the paper sets it: no guard, no floor


def bench_configs(methods: list[str], settings: Settings) -> Configs:
    """Each method at ``settings``; with ``lvspec`` set otherwise than the paper, the paper's rule beside it."""
    configs: Configs = {m: (m, settings) for m in methods}
    paper = replace(settings, **PAPER_RULE)
    if "lvspec" in methods and paper != settings:
        configs["lvspec (paper)"] = ("lvspec", paper)
    return configs


SWEEP_LAMS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9)
SWEEP_WINDOWS = (0, 3)


def unguarded(settings: Settings) -> Settings:
    """The paper's own rule: no relevance floor τ, no filler guard ε."""
    return replace(settings, tau=None, min_ratio=0.0)


def sweep_configs(settings: Settings, lams=SWEEP_LAMS, windows=SWEEP_WINDOWS) -> Configs:
    """The speed/quality frontier: LVSpec over λ × w, the random peer at the same λ (same looseness, no
    relevance), FLy at its published setting, exact-match SD and vanilla as the two ends; with a τ floor
    or an ε guard set, LVSpec without them at the same λ beside it (what the guards buy)."""
    configs: Configs = {"vanilla": ("vanilla", settings), "exact": ("exact", settings), "fly": ("fly", settings)}
    for w in windows:
        for lam in lams:
            configs[f"lvspec λ={lam:g} w={w}"] = ("lvspec", replace(settings, lam=lam, window=w))
    bare = unguarded(settings)
    if bare != settings:
        for lam in lams[1:]:
            configs[f"lvspec λ={lam:g} w={settings.window} unguarded"] = ("lvspec", replace(bare, lam=lam))
    for lam in lams[1:]:
        configs[f"random λ={lam:g} w={settings.window}"] = ("random", replace(settings, lam=lam))
    return configs


def print_table(result: dict) -> None:
    def pct(x):
        return "—" if x is None else f"{100 * x:.1f}%"

    def num(x, unit=""):
        return "—" if x is None else f"{x:.2f}{unit}"

    if "machine" in result:
        m = result["machine"]
        print(f"on {m['name']} ({m['device']}, {m['torch_threads']} torch threads)")
    head = ["method", "E[T]", "E[T] max", "tok/s", "speedup", "retention", "facts kept", "accuracy", "token F1",
            "ROUGE-L", *(f"{p} %" for p in PHASES)]
    rows = [head]
    for m, f in result["methods"].items():
        rows.append([m, num(f["mean_accepted_length"]), num(f["accepted_ceiling"]), f"{f['tokens_per_s']:.1f}",
                     num(f["speedup"], "×"), pct(f["retention"]), pct(f["facts_kept"]), pct(f["accuracy"]),
                     pct(f["token_f1"]), pct(f["rouge_l"]), *(f"{100 * f['shares'][p]:.1f}" for p in PHASES)])
    _print_rows(rows)
    for note in result.get("notes", []):
        print(note)
    for task, part in result.get("by_task", {}).items():
        print(f"\n{task} ({part['items']} items)")
        rows = [["method", "E[T]", "E[T] max", "tok/s", "speedup", "retention", "facts kept", "mismatch/100", "salvaged"]]
        for m, f in part["methods"].items():
            rows.append([m, num(f["mean_accepted_length"]), num(f["accepted_ceiling"]), f"{f['tokens_per_s']:.1f}",
                         num(f["speedup"], "×"), pct(f["retention"]), pct(f["facts_kept"]),
                         num(f.get("mismatches")), pct(f.get("salvaged"))])
        _print_rows(rows)


def _print_rows(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


def toy_suite(n: int, folder: Path, seed: int = 0) -> list[Item]:
    """``n`` held-out toy clips (never seen in training), each asked one prompt, kinds cycling."""
    from .toyworld.evaluate import held_out

    return [Item(e.path, e.prompt, e.scene, e.masks) for e in held_out(n, folder, seed)]


def sample_suite() -> list[Item]:
    """The example clips the app offers (assets/videos), each with every prompt offered beside it."""
    from .toyworld import VIDEOS
    from .toyworld.factcheck import shipped_scenes

    scenes = shipped_scenes()
    return [Item(str(VIDEOS / example["video"]), prompt, scenes[example["video"]])
            for example in json.loads((VIDEOS / "examples.json").read_text()) for prompt in example["prompts"]]


def machine(pair: ModelPair) -> dict:
    """Where the figures were measured: they mean little without it."""
    device = pair.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    if device.type == "cpu" and Path("/proc/cpuinfo").exists():
        models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")]
        name = models[0] if models else name
    return {"device": str(device), "name": name, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "dtype": str(pair.target.dtype).removeprefix("torch.")}
