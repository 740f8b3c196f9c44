"""``python -m lvspec generate|bench|sweep|errors|anchors``: one run with its trace; every method over a suite
with its figures (kept item by item in a run file that resumes, shared over processes under ``accelerate
launch`` or ``torchrun``); the speed/quality frontier; the answers a lossy method changed, worst first; how well
relevance finds the visual words."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UserError, checked_prompt, memory_errors, out_of_memory

MEMORY_HINT = "try fewer --frames, a smaller --k or --max-new-tokens, or --dtype bfloat16"
DTYPES = ("auto", "bfloat16", "float16", "float32", "float64")


def summary(trace) -> str:
    s, t = trace.stats, trace.timing
    return (
        f"[{trace.method}] {s.new_tokens} new tokens · E[T] {s.mean_accepted_length:.2f} "
        f"(max {trace.accepted_ceiling:.2f}) · "
        f"{s.tokens_per_s:.1f} tok/s · {t.total_s:.2f} s wall (prefill {t.prefill_s:.2f} s)"
    )


class Parser(argparse.ArgumentParser):
    """Usage mistakes end like every other user error: one ``error:`` line, exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    from .bench import BENCH_METHODS
    from .decode import METHODS, Settings

    d = Settings()
    p = Parser(prog="python -m lvspec", description="Loosely speculative decoding for video LLMs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    g = sub.add_parser("generate", help="answer one prompt about one video and report how it was decoded")
    g.add_argument("--video", required=True, help="path to a video file")
    g.add_argument("--prompt", required=True)
    g.add_argument("--method", choices=METHODS, default="lvspec")
    add_pair_and_settings(g, d)
    g.add_argument("--json", metavar="OUT", help="write the RunTrace here")
    b = sub.add_parser("bench", help="every method on every item of a suite: E[T], speedup, retention, time shares")
    b.add_argument("--methods", default="vanilla,exact,lvspec,fly,random,hf",
                   help=f"comma-separated, from {', '.join(BENCH_METHODS)} (hf: transformers' assisted generation)")
    w = sub.add_parser("sweep", help="the speed/quality frontier: LVSpec over λ and w, random and FLy beside it")
    for q in (b, w):
        q.add_argument("--suite", default="toy", help="toy (held-out rendered clips), samples (the app's example clips, "
                       "every prompt) or a JSONL file, one {\"video\": PATH, \"prompt\": TEXT} per line (optional: "
                       "reference, kind, choices; paths relative to the file)")
        q.add_argument("--run", metavar="RUN.jsonl", help="keep every item's traces here as it finishes; the same "
                       "command again skips the items already in it (resume)")
        q.add_argument("--n", type=int, default=30, help="items of the toy suite")
        add_tasks(q)
        q.add_argument("--repeats", type=int, default=1, help="timed runs per item and method (interleaved)")
        add_pair_and_settings(q, d)
        q.add_argument("--json", metavar="OUT", help="write the figures and every answer here")
        q.add_argument("--plot", metavar="OUT.png", help="write the figures as a picture (png, svg or pdf)")
    e = sub.add_parser("errors", help="the answers a lossy method changed in a run file, worst first, and where "
                       "each parted from vanilla's")
    e.add_argument("run_file", metavar="RUN.jsonl", help="a run file of bench --run (with vanilla in its methods)")
    e.add_argument("--config", action="append", help="judge this config (repeatable; default: every lossy one, "
                   "i.e. every method but vanilla, exact and hf)")
    e.add_argument("--epsilon", type=float, default=0.2, help="the filler guard ε to test each parting against")
    e.add_argument("--tau-probe", type=float, default=0.5, help="the relevance floor τ to test each parting against")
    e.add_argument("--limit", type=int, help="show at most this many")
    e.add_argument("--json", action="store_true", help="print the list as JSON")
    a = sub.add_parser("anchors", help="precision and recall of the anchor flag against the true visual words")
    a.add_argument("--n", type=int, default=30, help="items of the toy suite")
    add_tasks(a)
    a.add_argument("--layers", help="comma-separated target layers (default: every layer)")
    a.add_argument("--top-ns", default="1,3,10,30", help="comma-separated top-N values")
    add_pair_and_settings(a, d)
    a.add_argument("--json", metavar="OUT", help="write the table here")
    return p


def add_tasks(g: argparse.ArgumentParser) -> None:
    g.add_argument("--tasks", type=lambda text: [t for t in text.split(",") if t.strip()], default=[],
                   help="toy suite: only these tasks, comma-separated, from detailed, describe, medium, choice, "
                   "short-QA (default: all, cycling); --n items in all")


def add_pair_and_settings(g: argparse.ArgumentParser, d) -> None:
    from .pruning import KEEP

    g.add_argument("--threads", type=int, help="torch threads (default: torch's own; on a busy machine fewer "
                   "threads than cores keep timings steady)")
    g.add_argument("--target", help="hub id or local folder (HuggingFace format); default: the embedded pair")
    g.add_argument("--draft", help="hub id or local folder; default: the embedded draft when --target is not given")
    g.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    g.add_argument("--k", type=int, default=d.k, help="draft tokens per round")
    g.add_argument("--lam", type=float, default=d.lam, help="relaxation ratio λ: share of positions relaxed")
    g.add_argument("--top-n", type=int, default=d.top_n, help="video tokens averaged into relevance")
    g.add_argument("--tau", type=float, default=d.tau, help="relevance floor above which a token is an anchor")
    g.add_argument("--min-ratio", type=float, default=d.min_ratio, help="filler guard ε: p(draft) ≥ ε·p(target)")
    g.add_argument("--window", type=int, default=d.window, help="position-shift window w (0 = off)")
    g.add_argument("--commit-guard", action=argparse.BooleanOptionalAction, default=d.commit_guard,
                   help="judge a filler mismatch right before an anchor strictly (it may have chosen that fact)")
    g.add_argument("--layer", type=int, default=d.layer, help="target layer for relevance (default: middle)")
    g.add_argument("--frames", type=int, default=16, help="frames sampled from the video")
    g.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available)")
    g.add_argument("--dtype", default="auto", choices=DTYPES, help="auto: bf16 on CUDA, fp32 on CPU")
    g.add_argument("--device-map", help="accelerate device map of the target, e.g. auto: spread over every GPU")
    g.add_argument("--draft-device-map", help="where the draft goes if not with the target, e.g. cuda:3")
    g.add_argument("--attn", default="sdpa", help="attention kernel: sdpa, eager, flash_attention_2 …")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="run Python code that ships with the checkpoints (only when asked; warns)")
    g.add_argument("--draft-keep", type=float, nargs="?", const=KEEP,
                   help=f"share of the video tokens the draft reads (alone: {KEEP}; default: all, {KEEP} with --self-draft)")
    g.add_argument("--self-draft", action="store_true",
                   help="Self-SD: the target, reading only the kept video tokens, is its own draft (no --draft)")


def check(args, p: argparse.ArgumentParser) -> None:
    if args.self_draft and args.draft:
        p.error("--self-draft drafts with the target itself: leave out --draft")
    if args.target is None:
        from .toyworld import DRAFT, TARGET

        if not TARGET.is_dir():
            p.error(f"the embedded pair ships with the repository ({TARGET} is missing here): "
                    "pass --target (and --draft), or run from a clone")
        args.target, args.draft = str(TARGET), None if args.self_draft else args.draft or str(DRAFT)
    if args.command == "generate":
        methods = [args.method]
    elif args.command == "bench":
        methods = args.methods.split(",")
    else:
        methods = ["lvspec"] if args.command == "sweep" else ["vanilla"]
    if args.command == "bench":
        from .bench import BENCH_METHODS

        unknown = [m for m in methods if m not in BENCH_METHODS]
        if unknown:
            p.error(f"unknown method(s) {', '.join(unknown)} (choose from {', '.join(BENCH_METHODS)})")
    if args.command != "generate" and (args.n < 1 or getattr(args, "repeats", 1) < 1):
        p.error("--n and --repeats must be ≥ 1")
    drafting = [m for m in methods if m != "vanilla"]
    if drafting and not args.draft and not args.self_draft:
        p.error(f"--method {drafting[0]} needs --draft (or --self-draft)")
    if args.draft_keep is not None and not 0.0 < args.draft_keep <= 1.0:
        p.error("--draft-keep must be above 0 and at most 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be ≥ 1")
    if args.k < 1 or args.max_new_tokens < 1 or args.frames < 1 or args.top_n < 1 or args.window < 0:
        p.error("--k, --max-new-tokens, --frames and --top-n must be ≥ 1, --window ≥ 0")
    if not 0.0 <= args.lam <= 1.0:
        p.error("--lam must be between 0 and 1")
    check_device(args.device, p)
    for out in (getattr(args, "json", None), getattr(args, "plot", None), getattr(args, "run", None)):
        if out and not Path(out).resolve().parent.is_dir():
            p.error(f"cannot write {out}: its folder does not exist")


def check_device(device: str | None, p: argparse.ArgumentParser) -> None:
    """Refuse a device torch cannot name or this machine lacks before any model loads."""
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        p.error(f"--device {device} is not a device (cpu, cuda, cuda:1 …)")
    if kind == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {device}: this machine has no CUDA device")


def settings_of(args):
    from .decode import Settings
    from .pruning import KEEP

    keep = args.draft_keep if args.draft_keep is not None else KEEP if args.self_draft else 1.0
    return Settings(k=args.k, lam=args.lam, top_n=args.top_n, tau=args.tau, window=args.window,
                    min_ratio=args.min_ratio, commit_guard=args.commit_guard, layer=args.layer,
                    max_new_tokens=args.max_new_tokens, draft_keep=keep, self_draft=args.self_draft)


def load(args, with_draft: bool):
    """The pair the options name; loading progress and what each model took go to stderr."""
    from .models import load_pair

    return load_pair(args.target, args.draft if with_draft else None, device=args.device, dtype=args.dtype,
                     device_map=args.device_map, draft_device_map=args.draft_device_map, attn=args.attn,
                     trust_remote_code=args.trust_remote_code,
                     progress=lambda fraction, message: print(message, file=sys.stderr))


def suite_run(args) -> None:
    """``bench`` and ``sweep``: configs over a suite, a table, and the JSON and plot on request; with ``--run``,
    every item's traces kept as it finishes, and the items already there skipped. Under several processes
    each runs its share; the main one prints."""
    import json
    import tempfile
    from pathlib import Path

    from tqdm import tqdm

    from . import bench as b
    from . import suites

    state = getattr(args, "processes", None)
    main = state is None or state.is_main_process
    rank = f" [{state.process_index}]" if state is not None else ""

    def report(message: str) -> None:
        print(message, file=sys.stderr)

    settings = settings_of(args)
    if args.command == "bench":
        configs = b.bench_configs(args.methods.split(","), settings)
    else:
        configs = b.sweep_configs(settings)
    drafting = {m for m, _ in configs.values()} - {"vanilla"}
    if args.tasks and args.suite != "toy":
        raise UserError("--tasks chooses among the toy suite's tasks (--suite toy)")
    with tempfile.TemporaryDirectory() as tmp:
        if args.suite == "toy":
            suite = suites.toy_suite(args.n, Path(tmp), tasks=args.tasks)
        elif args.suite == "samples":
            suite = suites.sample_suite()
        else:  # every process reads the file; the main one reports its bad lines
            suite = suites.file_suite(args.suite, report if main else None)
        pair = load(args, with_draft=bool(drafting))

        def bar(total: int, done: int):
            return tqdm(total=total, initial=done, desc=args.command + rank, unit="item", leave=False,
                        position=state.process_index if state is not None else None)

        result = b.run(pair, suite, configs, args.repeats, args.frames, bar, args.run, report, state)
    if not main:
        return
    b.print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False))
    if args.plot:
        from viz.export import save_bench_figure

        save_bench_figure(result, args.plot)


def anchors(args) -> None:
    import json
    import tempfile
    from pathlib import Path

    from . import bench as b
    from .anchor_quality import anchor_table, print_anchor_table

    pair = load(args, with_draft=False)
    layers = [int(x) for x in args.layers.split(",")] if args.layers else None
    top_ns = [int(x) for x in args.top_ns.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        items = b.toy_suite(args.n, Path(tmp), tasks=args.tasks)
        table = anchor_table(pair, items, settings_of(args), layers, top_ns, args.frames)
    print_anchor_table(table)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))


def generate(args) -> None:
    from .decode import generate, warm_up
    from .video import VideoLimits, read_video

    clip = read_video(args.video, VideoLimits.from_env(max_frames=args.frames))
    prompt = checked_prompt(args.prompt)
    pair = load(args, with_draft=args.method != "vanilla")
    settings = settings_of(args)
    warm_up(pair, settings)  # so that the summary times the run, not first-call set-up
    trace = generate(pair, clip, prompt, args.method, settings)
    print(trace.text)
    print(summary(trace))
    if args.json:
        trace.save(args.json)


def processes(args, p: argparse.ArgumentParser):
    """accelerate's PartialState when this process is one of several (``accelerate launch`` or ``torchrun``
    started it), with its own device; else None (one process, nothing to share)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and os.environ.get("MASTER_ADDR"):
            # accelerate's simple launcher (--cpu without --mpirun_hostfile) names a master for several
            # processes but starts only this one.
            print("note: accelerate launch --cpu started one process: every item runs here. To share the items "
                  "over N CPU processes, use torchrun --nproc_per_node N -m lvspec …, or accelerate launch "
                  "--multi_gpu --num_processes N (on a machine without GPUs they run on the CPU), or --cpu with "
                  "--mpirun_hostfile", file=sys.stderr)
        return None
    if args.device_map or args.draft_device_map:
        p.error("with several processes each process takes one device: leave out --device-map and --draft-device-map")
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    cpu = args.device == "cpu" or (args.device is None and not torch.cuda.is_available())
    # A process that finishes its share early waits for the others at a barrier: give it the whole run's time.
    state = PartialState(cpu=cpu, timeout=timedelta(days=7))
    if args.device in (None, "cuda"):
        args.device = str(state.device)
    return state


def errors(args) -> None:
    import json
    from dataclasses import asdict

    from .error_list import error_list, print_errors
    from .runfile import load

    run = load(args.run_file)
    found = error_list(run, args.config, epsilon=args.epsilon, tau=args.tau_probe)
    shown = found[: args.limit] if args.limit else found
    if args.json:
        print(json.dumps([asdict(d) for d in shown], indent=1, ensure_ascii=False))
    else:
        print_errors(run, shown, len(found))


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command == "errors":
        if args.limit is not None and args.limit < 1:
            p.error("--limit must be ≥ 1")
        return _reported(errors, args)
    check(args, p)
    state = processes(args, p) if args.command in ("bench", "sweep") else None
    if state is not None:
        args.processes = state
    try:
        return _reported({"generate": generate, "bench": suite_run, "sweep": suite_run, "anchors": anchors}[args.command],
                         args)
    finally:
        if state is not None:
            state.destroy_process_group()


def _reported(command, args) -> int:
    """Run ``command``: 0, or 2 with one ``error:`` line for a user error (130 when interrupted)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        command(args)
    except UserError as err:  # the input is at fault: one line; anything else is a bug and keeps its traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = f" ({args.run} keeps every finished item: the same command goes on from there)" if getattr(
            args, "run", None) else ""
        print(f"error: interrupted{kept}", file=sys.stderr)
        return 130
    except memory_errors():
        pass  # report outside the except block: its traceback still holds the tensors that filled the memory
    else:
        return 0
    print(f"error: {out_of_memory(MEMORY_HINT)}", file=sys.stderr)
    return 2
