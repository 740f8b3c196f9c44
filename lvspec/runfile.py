"""A bench run kept on disk, item by item, so that it can stop anywhere and go on, and be judged again later.

A run file is JSON lines. The first record holds the settings (configs, models, frames, repeats, the
machine and its torch threads, the suite and its scorer), so a table can be rebuilt from the file alone;
each later record is one finished item: where it sits in the suite (``index``, ``key``), its video and
prompt, and every config's RunTraces (one per repeat) as dicts. A record is appended, flushed and synced
to disk as its item finishes: an interrupted run loses at most the item in flight, and the same command
run again skips the items the file already holds.

Several processes (``accelerate launch`` or ``torchrun``) each write their own part, ``RUN.jsonl.rank<N>``,
and the main process merges the parts into the run file when all are done (or, after an interruption,
when the next run starts). The parts must be on a filesystem every process can read.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UserError
from .suites import Item, Scorer, scorer_named
from .trace import RunTrace

VERSION = 1
# What must match for a run to go on. Not the suite's name: a run may go on over a longer suite (each record
# is checked against the suite's item of the same key instead, ``done``).
SAME = ("scorer", "configs", "target", "draft", "frames", "repeats")


def part_path(path: str | Path, rank: int) -> Path:
    path = Path(path)
    return path.with_name(f"{path.name}.rank{rank}")


def parts(path: str | Path) -> list[Path]:
    path = Path(path)
    found = [p for p in path.parent.glob(f"{path.name}.rank*") if p.name[len(path.name) + 5 :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(path.name) + 5 :]))


def _lines(path: Path) -> list[tuple[int, str]]:
    """The complete lines of a run file with their numbers; a last line cut off mid-write (the process was
    killed) is dropped, and the file cut back to its last complete record."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the run file {path}: {e}") from None
    end = data.rfind(b"\n") + 1
    if end < len(data):
        print(f"{path.name}: its last record was cut off mid-write; dropped (that item runs again)", file=sys.stderr)
        with path.open("r+b") as f:
            f.truncate(end)
    try:
        text = data[:end].decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path.name} is not a run file: {e}") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def read(path: str | Path) -> tuple[dict | None, list[dict]]:
    """The settings record (None for an empty or missing file) and the item records of a run file or part."""
    path = Path(path)
    if not path.exists():
        return None, []
    header, records = None, []
    for n, line in _lines(path):
        try:
            record = json.loads(line)
            kind = record["record"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UserError(f"{path.name} line {n} is not a run record: {e}") from None
        if kind == "settings" and header is None and not records:
            header = record
        elif kind == "item" and {"index", "key", "video", "prompt", "traces"} <= record.keys():
            records.append(record)
        else:
            raise UserError(f"{path.name} line {n} is not a run record")
    if records and header is None and not path.name.rsplit(".", 1)[-1].startswith("rank"):
        raise UserError(f"{path.name} has no settings record: not a run file")
    return header, records


def append(path: str | Path, record: dict) -> None:
    """One record at the end of the file, on disk before this returns."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def settings_record(suite, configs: dict, target: str, draft: str | None, frames: int, repeats: int,
                    machine: dict, processes: int = 1) -> dict:
    return {"record": "settings", "version": VERSION, "suite": suite.name, "scorer": suite.scorer.name,
            "items": len(suite),
            "configs": {label: {"method": m, **asdict(s)} for label, (m, s) in configs.items()},
            "target": target, "draft": draft, "frames": frames, "repeats": repeats, "machine": machine,
            "torch_threads": machine.get("torch_threads"), "processes": processes}


def item_record(index: int, item: Item, traces: dict[str, list[RunTrace]], rank: int = 0) -> dict:
    record = {"record": "item", "index": index, "key": item.key, "video": item.video, "prompt": item.prompt,
              "reference": item.reference, "kind": item.kind, "choices": item.choices, "rank": rank}
    if item.scene is not None:
        record["scene"] = asdict(item.scene)
    record["traces"] = {label: [t.to_dict() for t in repeats] for label, repeats in traces.items()}
    return record


def start(path: str | Path, header: dict) -> dict:
    """Begin a run file, or check that an existing one was made with the same settings; its settings."""
    path = Path(path)
    merge(path)
    saved, _ = read(path)
    if saved is None:
        if path.exists() and path.stat().st_size:
            raise UserError(f"{path.name} is not a run file")
        append(path, header)
        return header
    if saved.get("version") != VERSION:
        raise UserError(f"{path.name} is a run file of another version ({saved.get('version')})")
    differ = [name for name in SAME if _comparable(name, saved.get(name)) != _comparable(name, header[name])]
    if differ:
        raise UserError(f"{path.name} was run with other settings ({', '.join(differ)} differ): "
                        "use the same options to go on with it, or another --run file")
    if saved.get("machine") != header["machine"]:
        print(f"{path.name}: going on with a run begun on another machine or thread count; "
              "its speed figures mix the two", file=sys.stderr)
    return saved


def _comparable(name: str, value):
    """A setting as JSON has it (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value))


def merge(path: str | Path) -> int:
    """Move the records of any parts (``RUN.jsonl.rank<N>``) into the run file, then remove the parts; how
    many records moved. Records already in the file are not added twice."""
    path = Path(path)
    found = parts(path)
    if not found:
        return 0
    _, records = read(path)
    have = {r["key"] for r in records}
    moved = []
    for part in found:
        moved += [r for r in read(part)[1] if r["key"] not in have]
        have |= {r["key"] for r in moved}
    with open(path, "a", encoding="utf-8") as f:
        for record in sorted(moved, key=lambda r: r["index"]):
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    for part in found:
        part.unlink()
    return len(moved)


def done(path: str | Path, items: list[Item]) -> dict[str, dict]:
    """The records of ``path`` (and of any parts beside it) by item key, each checked against the suite's item
    of that key: a record of another video or prompt means the file belongs to another suite."""
    by_key = {item.key: item for item in items}
    records = {}
    for file in (Path(path), *parts(path)):
        for record in read(file)[1]:
            item = by_key.get(record["key"])
            if item is not None and (record["prompt"] != item.prompt or Path(record["video"]).name != Path(item.video).name):
                raise UserError(f"{Path(path).name} holds another item at {record['key']} "
                                f"({Path(record['video']).name}: {record['prompt']!r}): it belongs to another suite")
            records[record["key"]] = record
    return records


def traces_of(record: dict) -> dict[str, list[RunTrace]]:
    try:
        return {label: [RunTrace.from_dict(t) for t in repeats] for label, repeats in record["traces"].items()}
    except (TypeError, ValueError, KeyError, AttributeError, UserError) as e:
        raise UserError(f"the record of item {record.get('key')} holds a bad trace: {e}") from None


@dataclass
class SavedItem:
    index: int
    item: Item
    traces: dict[str, list[RunTrace]]


@dataclass
class SavedRun:
    """A run file read back: its settings, its finished items in suite order, and the suite's scorer."""

    path: Path
    settings: dict
    items: list[SavedItem] = field(default_factory=list)
    scorer: Scorer | None = None

    @property
    def configs(self) -> dict[str, str]:
        """Each config's method, by label."""
        return {label: c["method"] for label, c in self.settings["configs"].items()}


def load(path: str | Path) -> SavedRun:
    """A run file with every trace rebuilt (parts left by an interrupted multi-process run included)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no run file at {path}")
    header, records = read(path)
    for part in parts(path):
        records += read(part)[1]
    if header is None:
        raise UserError(f"{path.name} is empty: not a run file")
    scorer = scorer_named(header.get("scorer", ""))
    unique = {r["key"]: r for r in records}
    saved = []
    for record in sorted(unique.values(), key=lambda r: r["index"]):
        scene = _scene(record.get("scene")) if "scene" in record else None
        item = Item(record["video"], record["prompt"], scene, reference=record.get("reference"),
                    kind=record.get("kind"), choices=record.get("choices"), key=record["key"])
        saved.append(SavedItem(record["index"], item, traces_of(record)))
    return SavedRun(path, header, saved, scorer)


def _scene(data: dict):
    from .toyworld.world import Scene, ShapeSpec

    try:
        return Scene(tuple(ShapeSpec(**s) for s in data["shapes"]), data["background"])
    except (TypeError, KeyError) as e:
        raise UserError(f"a record holds a bad scene: {e}") from None
