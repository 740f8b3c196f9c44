"""The RunTrace: everything one decoding run did, token by token and round by round.

It is the contract between the library, the CLI, the charts and the app: ``generate --json`` writes it,
the app renders from it, and a saved trace re-opens with no model loaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

VERDICTS = ("target", "exact", "loose", "shift", "correction", "bonus")
PHASES = ("prefill", "draft", "verify", "identify", "other")  # where a run's wall time goes: Timing.<phase>_s


@dataclass
class TokenEvent:
    id: int
    text: str  # what this token adds to the answer ("" while a multi-byte character is incomplete)
    verdict: str  # one of VERDICTS
    anchor: bool
    relevance: float | None
    round: int  # 0 = the token from the prefill pass
    looks: list[int] | None = None  # a drafted token's top-N video tokens (indices into the video grid)


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
    params: dict
    target: str
    draft: str | None
    prompt: str
    video: dict
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

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> RunTrace:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"not a RunTrace: unknown fields {sorted(unknown)}")
        data = dict(data)
        data["tokens"] = [TokenEvent(**t) for t in data.get("tokens", [])]
        data["rounds"] = [Round(**r) for r in data.get("rounds", [])]
        data["timing"] = Timing(**data.get("timing", {}))
        data["stats"] = Stats(**data.get("stats", {}))
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> RunTrace:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> RunTrace:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def load_runs(path: str | Path) -> list[RunTrace]:
    """One saved RunTrace, or a list of them (a comparison); anything else is refused with the reason."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read a trace from {Path(path).name}: {e}") from None
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        raise ValueError(f"{Path(path).name} holds no RunTrace objects")
    try:
        return [RunTrace.from_dict(item) for item in items]
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{Path(path).name} is not a valid RunTrace: {e}") from None


def save_runs(traces: list[RunTrace], path: str | Path) -> None:
    Path(path).write_text(json.dumps([t.to_dict() for t in traces], indent=1, ensure_ascii=False), encoding="utf-8")
