"""Every method on every item of a suite, with interleaved repeats: speed and retention side by side.

Speedups are ratios measured in the same run (vanilla runs beside the others on the same items), per
decoded token so that answers of different lengths compare fairly. Retention is how much of the target's
own quality a method keeps: where the suite knows the facts (the toy suites) the attribute accuracy
relative to vanilla's; elsewhere agreement with vanilla's own answer: the same option picked on a
multiple-choice item, the token F1 of free text (``agreement``). A suite brings the scorer that judges
its answers (``lvspec.suites``), so nothing here knows the toy world.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .assisted import notes as hf_notes
from .decode import METHODS, Settings, generate, warm_up
from .errors import UserError
from .models import ModelPair
from .suites import Item, Scorer, Suite, as_suite, file_suite, sample_suite, toy_suite  # noqa: F401 (the suites)
from .trace import PHASES, RunTrace
from .video import VideoError, VideoLimits, read_video


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
    facts_kept: float | None  # share of answers whose parsed facts equal vanilla's, wording aside (toy suite)
    accuracy: float | None  # attribute accuracy (toy suite)
    shares: dict[str, float] = field(default_factory=dict)
    # Drafted positions where the draft's token was not the target's, per 100 answer tokens, and the share of
    # them the method kept (loose or shifted): what bounds exact-match SD, and what a looser rule buys back.
    mismatches: float | None = None
    salvaged: float | None = None
    # Of the facts vanilla states right (the clip's truth known), the share this method still states right: the
    # target's facts kept. Unlike facts_kept it does not count an answer that leaves out what the question did
    # not ask (a caption without its count) as changed.
    right_kept: float | None = None
    # The other direction: of the facts vanilla states wrong, how many this method states right. Beside right
    # kept it tells a rule that damages answers (losses only) from one that changes them without making them
    # worse (losses and gains alike, retention near 100%).
    gained_of: tuple[int, int] | None = None
    # Against the items' reference answers (where given): the option picked / token F1, and ROUGE-L of free text.
    reference_score: float | None = None
    reference_rouge_l: float | None = None
    # The counts behind facts_kept (answers) and right_kept (facts): 100% of 8 is read otherwise than of 256.
    facts_kept_of: tuple[int, int] | None = None
    right_kept_of: tuple[int, int] | None = None


def _decode_s(trace: RunTrace) -> float:
    return trace.timing.total_s - trace.timing.prefill_s


def agreement(scorer: Scorer, item: Item, reference: str, text: str) -> float:
    """How far ``text`` keeps ``reference`` (vanilla's answer, or the item's reference answer) where no facts
    are known: 1 or 0 for the option a multiple-choice item picks, the token F1 of free text."""
    if item.is_choice:
        return float(scorer.facts(item, reference) == scorer.facts(item, text))
    return token_f1(reference, text)


def figures(runs: dict[str, list[list[RunTrace]]], items: list[Item], scorer: Scorer) -> dict[str, MethodFigures]:
    """``runs[method][item]`` holds that item's repeats; the first repeat is the one judged for quality."""
    vanilla = runs.get("vanilla")
    verdicts = {label: [scorer.accuracy(item, repeats[0].text) for item, repeats in zip(items, per_item)]
                for label, per_item in runs.items()}
    known = all(v is not None for per_item in verdicts.values() for v in per_item)  # the truth of every item

    def per_token_s(method: str) -> float:
        traces = [t for repeats in runs[method] for t in repeats]
        return sum(_decode_s(t) for t in traces) / max(1, sum(t.stats.new_tokens - 1 for t in traces))

    def accuracy(method: str) -> float:
        pooled = [ok for per_fact in verdicts[method] for ok in per_fact.values()]
        return sum(pooled) / max(1, len(pooled))

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    reference_accuracy = accuracy("vanilla") if vanilla and known else None
    reference_s = per_token_s("vanilla") if vanilla else None
    referenced = [(i, item) for i, item in enumerate(items) if item.reference is not None]
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
            accuracy=accuracy(method) if known else None,
            shares=shares,
        )
        if vanilla:
            refs = [repeats[0].text for repeats in vanilla]
            fig.token_f1 = sum(token_f1(r, t.text) for r, t in zip(refs, firsts)) / len(firsts)
            fig.rouge_l = sum(rouge_l(r, t.text) for r, t in zip(refs, firsts)) / len(firsts)
            facts = [(scorer.facts(item, r), scorer.facts(item, t.text)) for item, r, t in zip(items, refs, firsts)]
            judged = [a == b for a, b in facts if a is not None]
            fig.facts_kept, fig.facts_kept_of = mean([float(k) for k in judged]), (sum(judged), len(judged))
            if known:
                fig.retention = fig.accuracy / reference_accuracy if reference_accuracy else None
                facts_then_now = [(ok, verdicts[method][i][fact]) for i, per_fact in enumerate(verdicts["vanilla"])
                                  for fact, ok in per_fact.items()]
                kept = [now for then, now in facts_then_now if then]
                fixed = [now for then, now in facts_then_now if not then]
                fig.right_kept = mean([float(now) for now in kept])
                fig.right_kept_of = (sum(kept), len(kept))
                fig.gained_of = (sum(fixed), len(fixed))
            else:
                fig.retention = mean([agreement(scorer, item, r, t.text) for item, r, t in zip(items, refs, firsts)])
        if referenced:
            fig.reference_score = mean([agreement(scorer, item, item.reference, firsts[i].text) for i, item in referenced])
            fig.reference_rouge_l = mean([rouge_l(item.reference, firsts[i].text) for i, item in referenced
                                          if not item.is_choice])
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


def run_item(pair: ModelPair, item: Item, configs: Configs, repeats: int = 1, frames: int = 16) -> dict[str, list[RunTrace]]:
    """Every config on one item, ``repeats`` times each. Configs are interleaved inside each repeat (in reverse
    order on odd repeats), so that a drifting machine speed hits all of them alike."""
    clip = read_video(item.video, VideoLimits(max_frames=frames))
    traces: dict[str, list[RunTrace]] = {label: [] for label in configs}
    for r in range(repeats):
        for label in configs if r % 2 == 0 else reversed(configs):
            method, settings = configs[label]
            traces[label].append(run_method(pair, clip, item.prompt, method, settings))
    return traces


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def run(pair: ModelPair, items, configs: Configs, repeats: int = 1, frames: int = 16, progress=None,
        run_file: str | Path | None = None, report=_stderr, processes=None, machine_info: dict | None = None
        ) -> dict | None:
    """Every config on every item of a suite (a ``Suite``, or a list of items judged without known facts).

    ``run_file``: keep every item's traces there as it finishes, and skip the items it already holds
    (``lvspec.runfile``); the figures are those of every item in the file. ``processes``: accelerate's
    ``PartialState`` when several processes share the work: each runs its share of the items left
    (``split_between_processes``) into its own part of the run file, and the main process, once all are done,
    merges the parts and returns the figures (the others return None). An item whose video cannot be read
    is reported through ``report`` and left out. ``progress(total, done)``: a progress bar (``update()``,
    ``close()``) for this process's items.
    """
    from . import runfile

    suite = as_suite(items)
    many = processes is not None and processes.num_processes > 1
    main = not many or processes.is_main_process
    if many and run_file is None:
        raise UserError("several processes share a run through a run file: pass --run RUN.jsonl "
                        "(on a disk every process can write)")
    header = runfile.settings_record(suite, configs, pair.target_name, pair.draft_name, frames, repeats,
                                     machine_info or machine(pair), processes.num_processes if many else 1)
    records: dict[str, dict] = {}
    if run_file is not None:
        if main:
            header = runfile.start(run_file, header)
        if many:
            processes.wait_for_everyone()
        records = runfile.done(run_file, suite.items)
    todo = [i for i, item in enumerate(suite) if item.key not in records]
    kept = {key: runfile.traces_of(record) for key, record in records.items()}
    sink = runfile.part_path(run_file, processes.process_index) if many else run_file
    share = contextlib.nullcontext(todo) if not many else processes.split_between_processes(todo)
    with share as mine:
        if mine:
            warm_up(pair)
        bar = progress(len(mine) if many else len(suite), 0 if many else len(suite) - len(todo)) if progress else None
        try:
            for i in mine:
                item = suite[i]
                try:
                    traces = run_item(pair, item, configs, repeats, frames)
                except VideoError as e:
                    report(f"{_where(suite, i)}: {e}; skipped")
                    continue
                if sink is not None:
                    runfile.append(sink, runfile.item_record(i, item, traces, processes.process_index if many else 0))
                kept[item.key] = traces
                if bar:
                    bar.update()
        finally:
            if bar:
                bar.close()
    if many:
        processes.wait_for_everyone()
        if not main:
            return None
        runfile.merge(run_file)
        kept = {key: runfile.traces_of(record) for key, record in runfile.done(run_file, suite.items).items()}
    result = tabulate(suite, configs, kept, header)
    result["notes"] = hf_notes(pair) if any(m == "hf" for m, _ in configs.values()) else []  # what hf's figures mean
    if run_file is not None:
        result["run"] = str(run_file)
    return result


def _where(suite: Suite, i: int) -> str:
    """How a report names an item: its file and line, or its index in a built-in suite."""
    item = suite[i]
    return f"{Path(suite.name).name} {item.key}" if item.key.startswith("line") else f"{suite.name} item {item.key or i}"


def tabulate(suite: Suite, configs: Configs, kept: dict[str, dict[str, list[RunTrace]]], header: dict) -> dict:
    """The figures of every item of ``suite`` that has traces in ``kept`` (by item key), in suite order."""
    rows = [item for item in suite if item.key in kept]
    if not rows:
        raise UserError("no item of the suite could be run: see the lines above")
    runs = {label: [kept[item.key][label] for item in rows] for label in configs}
    result = {
        "configs": header["configs"],
        "target": header["target"],
        "draft": header["draft"],
        "repeats": header["repeats"],
        "frames": header["frames"],
        "suite": header["suite"],
        "machine": header["machine"],
        "counts": {"items": len(suite), "run": len(rows), "skipped": len(suite) - len(rows)},
        "methods": {label: asdict(f) for label, f in figures(runs, rows, suite.scorer).items()},
        "items": [
            {"key": item.key, "video": item.video, "prompt": item.prompt,
             **{label: {"text": runs[label][i][0].text,
                        "mean_accepted_length": runs[label][i][0].stats.mean_accepted_length}
                for label in configs}}
            for i, item in enumerate(rows)
        ],
    }
    groups = by_task(runs, rows, suite.scorer)
    if groups:
        result["by_task"] = {
            task: {"items": len(subset), "methods": {m: asdict(f) for m, f in figures(runs_of, subset, suite.scorer).items()}}
            for task, (runs_of, subset) in groups.items()
        }
    return result


def by_task(runs: dict[str, list[list[RunTrace]]], items: list[Item], scorer: Scorer) -> dict[str, tuple[dict, list[Item]]]:
    """The runs and items of each task (the scorer's grouping; on toy scenes the paper's: detailed descriptions,
    short descriptions, medium answers, short QA, multiple choice), when every item has one. Where a
    method's E[T] comes from: a one-word answer bounds it as a paragraph does not."""
    tasks = [scorer.task(item) for item in items]
    if not items or None in tasks:
        return {}
    order = [*getattr(scorer, "task_order", ()), *tasks]
    rows = {task: [i for i, t in enumerate(tasks) if t == task] for task in dict.fromkeys(order)}
    return {task: ({label: [per_item[i] for i in idx] for label, per_item in runs.items()}, [items[i] for i in idx])
            for task, idx in rows.items() if idx}


PAPER_RULE = dict(lam=0.7, min_ratio=0.0, tau=None, window=3, commit_guard=False)  # as the paper sets it: no guards


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
    """The paper's own rule: no relevance floor τ, no filler guard ε, no commit guard."""
    return replace(settings, tau=None, min_ratio=0.0, commit_guard=False)


def sweep_configs(settings: Settings, lams=SWEEP_LAMS, windows=SWEEP_WINDOWS) -> Configs:
    """The speed/quality frontier: LVSpec over λ × w, the random peer at the same λ (same looseness, no
    relevance), FLy at its published setting, exact-match SD and vanilla as the two ends; with a τ floor,
    an ε guard or the commit guard set, LVSpec without them at the same λ beside it (what the guards buy)."""
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


LEAD = ("method", "E[T]", "E[T] max", "of max", "tok/s", "speedup", "retention", "right kept", "gained", "facts kept")


def print_table(result: dict) -> None:
    def pct(x):
        return "—" if x is None else f"{100 * x:.1f}%"

    def num(x, unit=""):
        return "—" if x is None else f"{x:.2f}{unit}"

    def of_max(f):
        """E[T] as a share of E[T] max: what compares across pairs whose drafts part from the target more or less."""
        return pct(f["mean_accepted_length"] / f["accepted_ceiling"]) if f["accepted_ceiling"] > 1 else "—"

    def kept(f, name):
        of = f.get(f"{name}_of")
        return pct(f.get(name)) + (f" ({of[0]}/{of[1]})" if of and of[1] else "")

    def gained(f):
        of = f.get("gained_of")
        return f"{of[0]}/{of[1]}" if of else "—"

    def lead(m, f):
        """The cells both tables begin with (``LEAD``): speed, then what the answers kept."""
        return [m, num(f["mean_accepted_length"]), num(f["accepted_ceiling"]), of_max(f), f"{f['tokens_per_s']:.1f}",
                num(f["speedup"], "×"), pct(f["retention"]), kept(f, "right_kept"), gained(f), kept(f, "facts_kept")]

    if "machine" in result:
        m = result["machine"]
        print(f"on {m['name']} ({m['device']}, {m['torch_threads']} torch threads)")
    if "counts" in result:
        c = result["counts"]
        skipped = f" ({c['skipped']} could not be run)" if c["skipped"] else ""
        print(f"{c['run']} of {c['items']} items{skipped}")
    referenced = any(f.get("reference_score") is not None for f in result["methods"].values())
    head = [*LEAD, "accuracy", "token F1", "ROUGE-L", *(("vs reference", "ref ROUGE-L") if referenced else ()),
            *(f"{p} %" for p in PHASES)]
    rows = [head]
    for m, f in result["methods"].items():
        rows.append([*lead(m, f), pct(f["accuracy"]), pct(f["token_f1"]), pct(f["rouge_l"]),
                     *((pct(f["reference_score"]), pct(f["reference_rouge_l"])) if referenced else ()),
                     *(f"{100 * f['shares'][p]:.1f}" for p in PHASES)])
    _print_rows(rows)
    for note in result.get("notes", []):
        print(note)
    for task, part in result.get("by_task", {}).items():
        print(f"\n{task} ({part['items']} items)")
        rows = [[*LEAD, "mismatch/100", "salvaged"]]
        for m, f in part["methods"].items():
            rows.append([*lead(m, f), num(f.get("mismatches")), pct(f.get("salvaged"))])
        _print_rows(rows)


def _print_rows(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


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
