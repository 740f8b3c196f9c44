"""The RunTrace: everything one decoding run did, token by token and round by round.

It is the contract between the library, the CLI, the charts and the app: ``generate --json`` writes it,
the app renders from it, and a saved trace re-opens with no model loaded.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UserError

# The verdict vocabulary, here once: a committed token's (VERDICTS) and a drafted position's (ROUND_VERDICTS).
VERDICTS = ("target", "exact", "loose", "shift", "correction", "bonus")
ROUND_VERDICTS = ("exact", "loose", "shift", "reject", "skip")
ACCEPTED = ("exact", "loose", "shift")  # the round verdicts that keep a drafted token
MAX_GRID_TOKENS = 2**20  # a saved trace's video grid is drawn as heat: bound what it may ask to allocate
PHASES = ("prefill", "draft", "verify", "identify", "other")  # where a run's wall time goes: Timing.<phase>_s


def accepted_prefix(verdicts: list[str]) -> int:
    """How many drafted tokens a round keeps: its verdicts up to the first that is not ACCEPTED."""
    n = 0
    while n < len(verdicts) and verdicts[n] in ACCEPTED:
        n += 1
    return n


@dataclass(frozen=True)
class Settings:
    """How a run decodes: the knobs of the loop and its policies, saved with every trace."""

    k: int = 10  # draft tokens per round
    lam: float = 0.7  # relaxation ratio: share of each round's positions treated as fillers (the paper's)
    top_n: int = 10  # video tokens averaged into a position's relevance
    tau: float | None = None  # relevance at or above which a position is always an anchor
    window: int = 3  # position-shift tolerance w (0 = off)
    commit_guard: bool = True  # a filler mismatch right before an anchor is judged strictly (False: the paper's)
    min_ratio: float = 0.2  # filler guard ε: accept a loose token only if p(d) ≥ ε·p(t) (0: the paper's rule)
    layer: int | None = None  # target layer whose hidden states score relevance (None = middle)
    video_repr: str = "input"  # video vectors: "input" (after the vision merger) or "layer" (same layer)
    max_new_tokens: int = 256  # room for a detailed description (the SpecVLM scripts use 256)
    draft_keep: float = 1.0  # share of the video tokens the draft reads (below 1: pruned, as in SpecVLM)
    self_draft: bool = False  # Self-SD: the target, reading only the kept video tokens, is its own draft

    def __post_init__(self):
        if not 0.0 < self.draft_keep <= 1.0:
            raise UserError(f"draft_keep must be in (0, 1], got {self.draft_keep}")


@dataclass
class VideoInfo:
    """The clip a run read: where from, how it was sampled, and how the model saw it."""

    path: str | None = None
    n_frames: int = 0  # frames sampled from the clip
    fps: float = 0.0
    seconds: float = 0.0
    size: list[int] = field(default_factory=lambda: [0, 0])  # the source's (width, height)
    grid: list[int] | None = None  # the target's video tokens as (time steps, rows, columns)
    draft_tokens: int | None = None  # video tokens the draft read (fewer when pruned)


@dataclass
class TokenEvent:
    id: int
    text: str  # what this token adds to the answer ("" while a multi-byte character is incomplete)
    verdict: str  # one of VERDICTS
    anchor: bool
    relevance: float | None
    round: int  # 0 = the token from the prefill pass


@dataclass
class Round:
    index: int
    draft_ids: list[int]
    target_ids: list[int]  # K + 1: the target's greedy token at each draft position, then the bonus
    p_draft_token: list[float]  # the target's probability of each draft token
    p_target_top: list[float]  # the target's probability of its own choice
    relevance: list[float]
    anchor: list[bool]
    verdicts: list[str]  # exact | loose | shift | reject | skip, one per draft position
    committed: int  # tokens this round added (accepted drafts + the correction or bonus)
    draft_s: float
    verify_s: float
    end_s: float = 0.0  # seconds from the run's start to this round's commit: replays at recorded speed
    looks: list[list[int]] | None = None  # each drafted position's top-N video tokens (indices into the grid)
    why: list[str] = field(default_factory=list)  # per draft position, the rule behind its verdict

    @property
    def accepted(self) -> int:
        """Drafted tokens this round kept."""
        return accepted_prefix(self.verdicts)


@dataclass
class Timing:
    prefill_s: float = 0.0
    draft_s: float = 0.0
    verify_s: float = 0.0
    identify_s: float = 0.0  # visual relevance, anchor split and the policy's verdicts
    other_s: float = 0.0
    total_s: float = 0.0


@dataclass
class Stats:
    new_tokens: int = 0
    target_passes: int = 0  # verification passes after the prefill
    mean_accepted_length: float = 0.0  # tokens committed per verification pass, E[T]
    tokens_per_s: float = 0.0  # decode rate: tokens after the prefill over the time after it


@dataclass
class RunTrace:
    method: str
    params: Settings
    target: str
    draft: str | None
    prompt: str
    video: VideoInfo
    text: str = ""
    tokens: list[TokenEvent] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)
    timing: Timing = field(default_factory=Timing)
    stats: Stats = field(default_factory=Stats)
    vocab: dict[str, str] = field(default_factory=dict)  # text of every drafted or target id, keyed by id

    def token_text(self, token_id: int) -> str:
        """A single id's text, so a saved trace shows the words of every round without its tokenizer."""
        return self.vocab.get(str(token_id), f"#{token_id}")

    @property
    def token_ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    @property
    def committed(self) -> int:
        """Tokens the target's verification passes committed: E[T] × passes."""
        return round(self.stats.mean_accepted_length * self.stats.target_passes)

    @property
    def fewest_passes(self) -> int:
        """Passes this answer would take if every drafted token were accepted, K + 1 tokens each."""
        k = self.params.k if self.draft else 0
        return -(-self.committed // (k + 1))

    @property
    def accepted_ceiling(self) -> float:
        """The E[T] of a draft accepted in full on this answer: the answer's end cuts its last round short, so a
        short answer cannot reach K + 1 whatever the draft and the policy."""
        return self.committed / max(1, self.fewest_passes)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> RunTrace:
        """Build from JSON data, refusing anything a RunTrace could not hold: a saved trace may come from anyone."""
        if not isinstance(data, dict):
            raise ValueError("not a RunTrace: expected an object")
        data = dict(data)
        parts = {"tokens": TokenEvent, "rounds": Round}
        for name, part in parts.items():
            if not isinstance(data.get(name, []), list):
                raise ValueError(f"RunTrace.{name} must be a list")
            data[name] = [_typed(part, item) for item in data.get(name, [])]
        data["timing"] = _typed(Timing, data.get("timing", {}))
        data["stats"] = _typed(Stats, data.get("stats", {}))
        params = data.get("params", {})
        if isinstance(params, dict):  # a trace saved before the commit guard existed ran without it
            params = {"commit_guard": False, **params}
        data["params"] = _typed(Settings, params)
        data["video"] = _typed(VideoInfo, data.get("video", {}))
        trace = _typed(cls, data)
        _check_values(trace)
        return trace

    @classmethod
    def from_json(cls, text: str) -> RunTrace:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> RunTrace:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def _conforms(value, hint) -> bool:
    """Whether JSON-loaded ``value`` fits the annotation ``hint`` (the few shapes a trace uses)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return value is None if hint is type(None) else isinstance(value, hint)


def _typed(cls, data):
    """``cls(**data)`` once every field has the type its annotation names (nested parts already built)."""
    if not isinstance(data, dict):
        raise ValueError(f"not a {cls.__name__}: expected an object")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ValueError(f"not a {cls.__name__}: unknown fields {unknown}")
    for name, value in data.items():
        if not _conforms(value, hints[name]):
            raise ValueError(f"{cls.__name__}.{name} has the wrong type ({type(value).__name__})")
    return cls(**data)


def _check_values(trace: RunTrace) -> None:
    """What the views rely on beyond types: known verdicts, per-round lists of one length, a sane grid."""
    if any(t.verdict not in VERDICTS for t in trace.tokens):
        raise ValueError(f"a token's verdict is not one of {', '.join(VERDICTS)}")
    for r in trace.rounds:
        k = len(r.draft_ids)
        per_position = (r.p_draft_token, r.p_target_top, r.relevance, r.anchor, r.verdicts)
        optional = (r.looks or [[]] * k, r.why or [""] * k)  # a saved trace may lack them
        if len(r.target_ids) != k + 1 or any(len(x) != k for x in (*per_position, *optional)):
            raise ValueError(f"round {r.index} has lists of different lengths")
        if not set(r.verdicts) <= set(ROUND_VERDICTS):
            raise ValueError(f"round {r.index} has a verdict not in {', '.join(ROUND_VERDICTS)}")
    grid = trace.video.grid
    if grid is not None and not (
        _conforms(grid, list[int]) and len(grid) == 3 and min(grid) > 0 and grid[0] * grid[1] * grid[2] <= MAX_GRID_TOKENS
    ):
        raise ValueError("the video grid must be three positive sizes of a bounded product")


def load_runs(path: str | Path) -> list[RunTrace]:
    """One saved RunTrace, or a list of them (a comparison); anything else is refused with the reason."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read a trace from {Path(path).name}: {e}") from None
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        raise UserError(f"{Path(path).name} holds no RunTrace objects")
    try:
        return [RunTrace.from_dict(item) for item in items]
    except (TypeError, ValueError, KeyError, UserError) as e:
        raise UserError(f"{Path(path).name} is not a valid RunTrace: {e}") from None


def save_runs(traces: list[RunTrace], path: str | Path) -> None:
    Path(path).write_text(json.dumps([t.to_dict() for t in traces], indent=1, ensure_ascii=False), encoding="utf-8")
