"""``python -m lvspec.toyworld train|eval|samples|recipe|frames``: build, score and show the embedded pair."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from . import DRAFT, TARGET, VIDEOS
from .world import STYLES


def main() -> None:
    from .train import TrainConfig

    p = argparse.ArgumentParser(prog="python -m lvspec.toyworld")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the embedded target or draft (resumes from --work)")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        value = getattr(defaults, f.name)
        if value is None:
            kind = {"float": float, "int": int}.get(f.type.split(" | ")[0], str)
        else:
            kind = (lambda s: s.lower() in ("1", "true", "yes")) if isinstance(value, bool) else type(value)
        t.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=value)
    e = sub.add_parser("eval", help="attribute accuracy of target and draft alone on held-out clips")
    e.add_argument("--n", type=int, default=200)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--style", choices=STYLES, default="default", help="renderer of the held-out clips")
    e.add_argument("--target", default=str(TARGET))
    e.add_argument("--draft", default=str(DRAFT))
    e.add_argument("--max-side", type=int, metavar="PIXELS",
                   help="read the clips at this frame budget instead of each model's own (its processor's)")
    e.add_argument("--json", metavar="OUT")
    e.add_argument("--drills", type=int, default=0, metavar="N",
                   help="also the target's letter on N held-out letter drills (the option given)")
    s = sub.add_parser("samples", help="write the example clips and their prompts")
    s.add_argument("--out", default=str(VIDEOS))
    r = sub.add_parser("recipe", help="the train commands that made the shipped pair, from nothing")
    r.add_argument("--target", default=str(TARGET))
    r.add_argument("--draft", default=str(DRAFT))
    f = sub.add_parser("frames", help="give a trained model another frame budget (recorded for the recipe)")
    f.add_argument("model", help="a model folder that train wrote")
    f.add_argument("--max-side", type=int, required=True, metavar="PIXELS")
    args = p.parse_args()

    if args.command == "train":
        from .train import train

        train(TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)}))
    elif args.command == "eval":
        from .evaluate import evaluate, print_table, save

        results = evaluate({"target": args.target, "draft": args.draft}, n=args.n, seed=args.seed, style=args.style,
                           max_side=args.max_side)
        if args.drills:
            from .evaluate import letter_lookup

            results["target"]["letter_lookup"] = letter_lookup(args.target, args.drills, args.seed)
        print_table(results)
        if args.json:
            save(results, args.json)
    elif args.command == "recipe":
        from .recipe import commands

        print("\n".join(commands({"target": Path(args.target), "draft": Path(args.draft)})))
    elif args.command == "frames":
        from .vocab import reframe

        reframe(Path(args.model), args.max_side)
    else:
        from .samples import write_samples

        print(write_samples(Path(args.out)))


if __name__ == "__main__":
    main()
