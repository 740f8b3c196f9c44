"""The commands that made a trained model, from nothing: its ``training.json`` records every stage's
configuration, newest first (``continues``); this prints them oldest first as ``train`` commands.

A stage starts from the one before it (``continues`` is its ``init``'s record), and a ``tokenizer_from`` is
renamed to the folder of the stage that wrote it, so the list runs as it stands on a fresh clone. A stage
stopped before the end of its learning-rate schedule says so (``stop_at``); one whose settings changed on
resume runs as two commands on one work folder, the first with the settings it began with (a record's
``began_with``); a frame budget set on a stage's model afterwards (``frames``) follows it as a ``frames``
command. What a record cannot say, the version of the code each stage ran, docs/training.md does."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

from .train import TrainConfig

def stages(model: Path) -> list[dict]:
    """A model's training records, oldest first."""
    record, chain = json.loads((Path(model) / "training.json").read_text()), []
    while record:
        chain.append(record)
        record = record.get("continues")
    return chain[::-1]


def commands(models: dict[str, Path]) -> list[str]:
    """``train`` commands for each role's stages in turn (the target's first: a draft borrows its tokenizer)."""
    renamed: dict[str, str] = {}  # a recorded output (model or processor folder) -> its folder in the recipe
    lines = []
    for role, model in models.items():
        chain = stages(model)
        for i, record in enumerate(chain):
            c = dict(record["config"])
            last = i == len(chain) - 1
            work = f"runs/{role}-{i + 1}"
            out = os.path.relpath(model) if last else f"{work}/model"
            c["init"] = f"runs/{role}-{i}/model" if i else None
            c["tokenizer_from"] = renamed.get(c.get("tokenizer_from"), c.get("tokenizer_from"))
            renamed[record["config"]["out"]] = out
            renamed[str(Path(record["config"].get("work", work)) / "processor")] = f"{work}/processor"
            c |= {"work": work, "out": out}
            if began := record.get("began_with"):
                lines.append(command(c | began))
            lines.append(command(c))
            if "frames" in record:  # the frame budget set after the stage (``vocab.reframe``)
                lines.append(f"python -m lvspec.toyworld frames {out} --max-side {record['frames']}")
    return lines


def command(c: dict) -> str:
    """One ``train`` command: the work and output folders, and every setting that differs from the default."""
    defaults = TrainConfig()
    flags = [f"--{f.name.replace('_', '-')} {c[f.name]}" for f in fields(TrainConfig)
             if f.name in ("work", "out") or c.get(f.name) is not None and c[f.name] != getattr(defaults, f.name)]
    return "python -m lvspec.toyworld train " + " ".join(flags)
