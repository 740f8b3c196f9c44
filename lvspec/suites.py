"""What ``bench`` runs over: a suite is its items plus the scorer that judges their answers.

Three suites come with the library: ``toy`` (held-out rendered clips), ``samples`` (the app's example clips)
and a JSONL file of your own. The first two know each clip's facts and bring a scorer that parses them out of
an answer (``lvspec.toyworld.answers``); a file suite knows no facts, and its scorer compares answers with the
target's own (vanilla's) and with a ``reference`` where one is given: the chosen option of a multiple-choice
item, word overlap (token F1, ROUGE-L) of free text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from .errors import UserError, checked_prompt

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Item:
    video: str
    prompt: str
    scene: object | None = None  # a toy-world Scene: the reference facts (None: compare with vanilla only)
    masks: object | None = None  # toy world: (T, H, W) per source frame, which object covers each pixel
    reference: str | None = None  # a reference answer, scored the way vanilla's is
    kind: str | None = None  # what the item asks ("choice": one option of several); groups the by-task table
    choices: list[str] | None = None  # the options of a multiple-choice item, lettered A, B, C … in order
    key: str = ""  # where the item sits in its suite ("line 4" of a file, else its index): how a run finds it

    @property
    def is_choice(self) -> bool:
        return bool(self.choices) or self.kind == "choice"


class Scorer(Protocol):
    """How a suite judges an answer. ``facts``: what an answer commits to, comparable between two answers of
    one item (None: nothing to parse, compare the words); ``accuracy``: each asked fact right or wrong against
    the item's known truth (None: no truth known); ``task``: the item's group in the by-task table."""

    name: str

    def facts(self, item: Item, text: str) -> frozenset | None: ...

    def accuracy(self, item: Item, text: str) -> dict[str, bool] | None: ...

    def task(self, item: Item) -> str | None: ...


class ToyScorer:
    """The toy world's parser: the facts an answer states (``answers.stated``) and whether they are the scene's."""

    name = "toy"

    @property
    def task_order(self) -> tuple[str, ...]:
        from .toyworld.answers import TASKS

        return tuple(dict.fromkeys(TASKS.values()))

    def facts(self, item: Item, text: str) -> frozenset:
        from .toyworld.answers import stated

        return stated(item.prompt, text)

    def accuracy(self, item: Item, text: str) -> dict[str, bool] | None:
        from .toyworld.answers import score

        return None if item.scene is None else score(item.scene, item.prompt, text)

    def task(self, item: Item) -> str | None:
        from .toyworld.answers import TASKS, _prompt_kind

        try:
            return TASKS[_prompt_kind(item.prompt)]
        except ValueError:
            return None


class AnswerScorer:
    """No facts known: a multiple-choice item's answer is the option it picks, anything else is words."""

    name = "answers"

    def facts(self, item: Item, text: str) -> frozenset | None:
        return frozenset({("choice", chosen(item, text))}) if item.is_choice else None

    def accuracy(self, item: Item, text: str) -> dict[str, bool] | None:
        return None

    def task(self, item: Item) -> str | None:
        return item.kind or ("choice" if item.is_choice else None)


def options(item: Item) -> dict[str, str]:
    """A choice item's options by letter: its ``choices``, else the "A. …" lines of its prompt."""
    if item.choices:
        return dict(zip(LETTERS, item.choices))
    return dict(re.findall(r"^\s*\(?([A-Z])[.):]\s*(.+?)\s*$", item.prompt, flags=re.M))


def _plain(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def chosen(item: Item, text: str) -> str:
    """The option an answer picks, as its letter: a leading letter ("B", "B.", "(B) blue", "The answer is B"),
    a bracketed one ("blue (B)."), else the one option whose text the answer states; failing all, the answer
    itself, normalised (two answers that pick nothing recognisable still compare)."""
    letters = options(item)
    valid = "".join(letters) or LETTERS[:4]
    m = re.match(rf"\s*(?:[Tt]he answer is:?\s*|[Aa]nswer:\s*)?\(?([{valid}])(?:[.):]|\s*$)", text)
    m = m or re.search(rf"\(([{valid}])\)", text)
    if m:
        return m.group(1).upper()
    said = f" {_plain(text)} "
    named = {letter: f" {_plain(option)} " for letter, option in letters.items() if _plain(option)}
    named = {letter: o for letter, o in named.items() if o in said}
    # "light blue" names that option, not "blue" too: an option inside another named one does not count
    named = [letter for letter, o in named.items() if not any(o != other and o in other for other in named.values())]
    return named[0] if len(named) == 1 else _plain(text)


@dataclass
class Suite(Sequence):
    """A suite's items and its scorer; ``problems``: the lines of a file that could not be items, and why."""

    name: str
    items: list[Item]
    scorer: Scorer
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def as_suite(items) -> Suite:
    """A Suite as is; a bare list of items becomes one judged without known facts, keyed by index."""
    if isinstance(items, Suite):
        return items
    return Suite("items", [item if item.key else replace(item, key=str(i)) for i, item in enumerate(items)],
                 AnswerScorer())


def file_suite(path: str | Path, report: Callable[[str], None] | None = None) -> Suite:
    """A JSONL file, one ``{"video": PATH, "prompt": TEXT, "reference"?: TEXT, "kind"?: TEXT, "choices"?:
    [TEXT, …]}`` per line; video paths relative to the file's folder. A line that is no such object (bad JSON,
    no prompt, a video that is not there) is reported through ``report`` with its number and left out."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the suite {path}: {e}") from None
    suite = Suite(str(path), [], AnswerScorer())
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"not JSON ({e.msg} at column {e.colno})") from None
            suite.items.append(_item(row, path.parent, f"line {n}"))
        except UserError as e:
            message = f"{path.name} line {n}: {e}; skipped"
            suite.problems.append(message)
            if report:
                report(message)
    if not suite.items:
        raise UserError(f"{path.name} has no usable item: each line is one "
                        '{"video": PATH, "prompt": TEXT} (optional: reference, kind, choices)')
    return suite


FIELDS = {"video", "prompt", "reference", "kind", "choices"}


def _item(row, folder: Path, key: str) -> Item:
    if not isinstance(row, dict):
        raise UserError('expected an object {"video": …, "prompt": …}')
    unknown = sorted(set(row) - FIELDS)
    if unknown:
        raise UserError(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(FIELDS))})")
    video, prompt = row.get("video"), row.get("prompt")
    if not isinstance(video, str) or not video.strip():
        raise UserError('no "video" path')
    if not isinstance(prompt, str):
        raise UserError('no "prompt" text')
    prompt = checked_prompt(prompt)
    file = (folder / video).resolve()
    if not file.is_file():
        raise UserError(f"video {video} not found")
    reference, kind, choices = row.get("reference"), row.get("kind"), row.get("choices")
    if reference is not None and not isinstance(reference, str):
        raise UserError('"reference" must be text')
    if kind is not None and not isinstance(kind, str):
        raise UserError('"kind" must be text')
    if choices is not None and not (isinstance(choices, list) and 2 <= len(choices) <= len(LETTERS)
                                    and all(isinstance(c, str) and c.strip() for c in choices)):
        raise UserError('"choices" must be a list of 2 to 26 option texts')
    return Item(str(file), prompt, reference=reference, kind=kind, choices=choices, key=key)


def toy_suite(n: int, folder: Path, seed: int = 0, tasks: Sequence[str] = ()) -> Suite:
    """``n`` held-out toy clips (never seen in training), each asked one prompt, kinds cycling; with ``tasks``
    (e.g. ``["detailed"]``) only the kinds of those tasks, so one task gets all ``n`` items: a share of 99% is
    a claim about a few hundred answers, not the 32 a task gets in a mixed suite of 256."""
    from .toyworld.answers import TASKS
    from .toyworld.evaluate import KINDS, held_out

    chosen_tasks = toy_tasks(tasks) if tasks else set(TASKS.values())
    kinds = tuple(kind for kind in KINDS if TASKS[kind] in chosen_tasks)
    items = [Item(e.path, e.prompt, e.scene, e.masks, key=str(i))
             for i, e in enumerate(held_out(n, folder, seed, kinds=kinds))]
    return Suite("toy", items, ToyScorer())


def toy_tasks(names: Sequence[str]) -> set[str]:
    """The toy world's task names as written on a command line ("short QA", "short-qa", "Detailed" …)."""
    order = ToyScorer().task_order
    known = {task.lower().replace(" ", "-"): task for task in order}
    spelled = {name: name.strip().lower().replace(" ", "-").replace("_", "-") for name in names}
    unknown = [name for name, key in spelled.items() if key not in known]
    if unknown:
        raise UserError(f"unknown task(s) {', '.join(map(repr, unknown))} (the toy suite's: {', '.join(order)})")
    return {known[key] for key in spelled.values()}


def sample_suite() -> Suite:
    """The example clips the app offers (assets/videos), each with every prompt offered beside it."""
    from .toyworld import VIDEOS
    from .toyworld.factcheck import shipped_scenes

    scenes = shipped_scenes()
    examples = json.loads((VIDEOS / "examples.json").read_text())
    pairs = [(example["video"], prompt) for example in examples for prompt in example["prompts"]]
    items = [Item(str(VIDEOS / video), prompt, scenes[video], key=str(i)) for i, (video, prompt) in enumerate(pairs)]
    return Suite("samples", items, ToyScorer())


def scorer_named(name: str) -> Scorer:
    """The scorer a run file names (its suite's), so a saved run is judged as it was run."""
    return ToyScorer() if name == "toy" else AnswerScorer()
