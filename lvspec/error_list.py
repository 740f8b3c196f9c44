"""The answers a lossy method changed, worst first, and where each one parted from the target's own.

A run file (``bench --run``) keeps every config's RunTraces beside vanilla's, so each lossy answer (any config
whose method is not vanilla, exact or hf) can be walked token by token against vanilla's ids. The first
committed token that differs is where the answers part: its round, its position in the round, the drafted and
the target's token there, the verdict that let the draft through (``loose`` or ``shift``), the position's
relevance and rank in its round, p(draft)/p(target), and whether the filler guard ε (p(d) ≥ ε·p(t)), a
relevance floor τ (an anchor is never loose) or the commit guard (no loose filler right before an anchor)
would have stopped it.

``error_list`` returns typed dataclasses (``Divergence``, ``Parting``) for a UI to render; ``print_errors``
is the CLI's view of them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from .bench import token_f1
from .errors import UserError
from .policies import before_anchor
from .runfile import SavedRun
from .trace import RunTrace

LOSSLESS = ("vanilla", "exact", "hf")  # methods that keep the target's answer token for token


@dataclass
class WordDiff:
    """One run of words: kept in both answers (``=``), only in vanilla's (``-``) or only in the lossy one (``+``)."""

    op: str
    text: str


@dataclass
class Parting:
    """Where a lossy answer first leaves vanilla's: the committed token that differs, and how it got through."""

    token: int  # index in the answer of the first token that differs
    round: int  # the lossy run's round that committed it (Round.index; 0 = the prefill's token)
    position: int | None  # its drafted position in that round (0-based), None if the target chose it
    positions: int  # drafted positions in the round (K, or fewer at the answer's end)
    verdict: str  # the token's verdict: loose or shift for a drafted token the target did not pick
    drafted: str | None  # the draft's token there (text)
    target: str | None  # the target's own choice there (text): what vanilla would have committed
    vanilla: str | None  # what vanilla did commit at this index (None: vanilla's answer had already ended)
    relevance: float | None
    rank: int | None  # the position's relevance rank in its round (1 = the most visual)
    anchor: bool | None  # whether the policy held the position strict
    p_draft: float | None  # the target's probability of the drafted token
    p_target: float | None  # the target's probability of its own choice
    ratio: float | None  # p_draft / p_target
    epsilon: float  # the guard ε tested (and the run's own, ``run_epsilon``)
    run_epsilon: float
    guard_stops: bool | None  # p(d) < ε·p(t): the guard would have rejected it (None: ε does not judge a shift)
    tau: float  # the relevance floor τ tested (and the run's own, ``run_tau``)
    run_tau: float | None
    tau_anchors: bool | None  # relevance ≥ τ: the position would have been an anchor
    tau_stops: bool | None  # ... and so not accepted loose (an anchor may still be shifted)
    commit_stops: bool | None = None  # a loose filler right before an anchor: the commit guard rejects it
    run_commit_guard: bool = False


@dataclass
class Divergence:
    """One item whose lossy answer is not vanilla's."""

    index: int
    key: str
    video: str
    prompt: str
    config: str
    method: str
    vanilla_text: str
    text: str
    facts_changed: bool  # the facts the answers state differ (where the suite's scorer parses facts)
    lost: list[str] = field(default_factory=list)  # facts vanilla states that the lossy answer does not
    gained: list[str] = field(default_factory=list)
    token_f1: float = 1.0  # word overlap with vanilla's answer
    diff: list[WordDiff] = field(default_factory=list)
    parting: Parting | None = None

    @property
    def marked(self) -> str:
        """The word diff as text: ``[-vanilla's words-]{+the lossy answer's+}``."""
        return " ".join(d.text if d.op == "=" else f"[-{d.text}-]" if d.op == "-" else f"{{+{d.text}+}}"
                        for d in self.diff)


def word_diff(before: str, after: str) -> list[WordDiff]:
    a, b = before.split(), after.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(WordDiff("=", " ".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(WordDiff("-", " ".join(a[i1:i2])))
        if j2 > j1:
            out.append(WordDiff("+", " ".join(b[j1:j2])))
    return out


def parting(lossy: RunTrace, vanilla: RunTrace, epsilon: float = 0.2, tau: float = 0.5) -> Parting | None:
    """Walk ``lossy``'s committed tokens against vanilla's ids; where the first one differs, what happened there
    (None if one answer's ids are a prefix of the other's and both stopped at the same place)."""
    ids, reference = lossy.token_ids, vanilla.token_ids
    i = next((n for n, (a, b) in enumerate(zip(ids, reference)) if a != b), min(len(ids), len(reference)))
    if i >= len(ids):
        return None  # the lossy answer is vanilla's cut short: no token of its own to blame
    event = lossy.tokens[i]
    same_round = [n for n, t in enumerate(lossy.tokens[: i + 1]) if t.round == event.round]
    spot = len(same_round) - 1  # the token's place among those its round committed
    rnd = next((r for r in lossy.rounds if r.index == event.round), None)
    drafted = rnd is not None and spot < len(rnd.draft_ids) and event.verdict in ("exact", "loose", "shift")
    run_eps, run_tau = lossy.params.min_ratio, lossy.params.tau
    found = Parting(i, event.round, spot if drafted else None, len(rnd.draft_ids) if rnd else 0, event.verdict,
                    lossy.token_text(event.id) if drafted else None, None,
                    vanilla.token_text(reference[i]) if i < len(reference) else None,
                    None, None, None, None, None, None, epsilon, run_eps, None, tau, run_tau, None, None,
                    run_commit_guard=lossy.params.commit_guard)
    if rnd is None:
        return found
    if spot < len(rnd.target_ids):
        found.target = lossy.token_text(rnd.target_ids[spot])
    if not drafted:
        return found
    p = spot
    found.relevance = rnd.relevance[p]
    found.rank = 1 + sum(r > rnd.relevance[p] for r in rnd.relevance)
    found.anchor = rnd.anchor[p]
    found.p_draft, found.p_target = rnd.p_draft_token[p], rnd.p_target_top[p]
    found.ratio = found.p_draft / found.p_target if found.p_target else None
    if event.verdict == "loose":
        found.guard_stops = found.p_draft < epsilon * found.p_target
        found.commit_stops = before_anchor(rnd.anchor, p)
    found.tau_anchors = found.relevance >= tau
    found.tau_stops = found.tau_anchors and event.verdict == "loose"
    return found


def _fact(f) -> str:
    return " ".join(str(x) for x in f) if isinstance(f, tuple) else str(f)


def error_list(run: SavedRun, configs: list[str] | None = None, epsilon: float = 0.2, tau: float = 0.5
               ) -> list[Divergence]:
    """Every item where a config's answer (each lossy config's, or those named) is not vanilla's: fact changes
    first, then those that part earliest, then those that keep the fewest of vanilla's words."""
    methods = run.configs
    if "vanilla" not in methods:
        raise UserError(f"{run.path.name} has no vanilla answers to compare with: run bench with vanilla in --methods")
    unknown = [c for c in configs or [] if c not in methods]
    if unknown:
        raise UserError(f"no config {', '.join(map(repr, unknown))} in {run.path.name} "
                        f"(it has {', '.join(map(repr, methods))})")
    chosen = configs or [label for label, m in methods.items() if m not in LOSSLESS]
    found = []
    for saved in run.items:
        vanilla = saved.traces["vanilla"][0]
        for label in chosen:
            lossy = saved.traces[label][0]
            if lossy.text == vanilla.text:
                continue
            before, after = run.scorer.facts(saved.item, vanilla.text), run.scorer.facts(saved.item, lossy.text)
            changed = before is not None and before != after
            found.append(Divergence(
                saved.index, saved.item.key, saved.item.video, saved.item.prompt, label, methods[label],
                vanilla.text, lossy.text, changed,
                sorted(map(_fact, before - after)) if changed else [], sorted(map(_fact, after - before)) if changed else [],
                token_f1(vanilla.text, lossy.text), word_diff(vanilla.text, lossy.text),
                parting(lossy, vanilla, epsilon, tau)))
    far = 1 << 30
    found.sort(key=lambda d: (not d.facts_changed, d.parting.token if d.parting else far, d.token_f1, d.index))
    return found


def print_errors(run: SavedRun, found: list[Divergence], total: int | None = None) -> None:
    lossy = sorted({d.config for d in found}) or [label for label, m in run.configs.items() if m not in LOSSLESS]
    facts = sum(d.facts_changed for d in found)
    total = len(found) if total is None else total
    print(f"{total} changed answer(s) over {len(run.items)} items ({', '.join(lossy) or 'no lossy config'}): "
          f"{facts} with changed facts" + (f"; the first {len(found)} shown" if total > len(found) else ""))
    for n, d in enumerate(found, 1):
        what = "facts changed" if d.facts_changed else "words changed"
        print(f"\n#{n} item {d.key or d.index} [{d.config}] {what}"
              + (f": lost {{{', '.join(d.lost)}}}, gained {{{', '.join(d.gained)}}}" if d.facts_changed else "")
              + f" · token F1 {d.token_f1:.2f}")
        print(f"  prompt: {' / '.join(d.prompt.splitlines())}")
        print(f"  answer: {d.marked}")
        p = d.parting
        if p is None:
            print("  parting: the lossy answer is vanilla's, cut short")
            continue
        where = f"token {p.token}, round {p.round}"
        if p.position is None:
            print(f"  parted at {where}: the target's own token ({p.verdict}), vanilla had {p.vanilla!r}")
            continue
        print(f"  parted at {where}, position {p.position + 1} of {p.positions}: drafted {p.drafted!r}, "
              f"target {p.target!r}; verdict {p.verdict}; relevance {p.relevance:.3f} (rank {p.rank} of {p.positions}"
              f"{', anchor' if p.anchor else ', filler'}); p(draft)/p(target) = {p.p_draft:.3f}/{p.p_target:.3f}"
              + (f" = {p.ratio:.3f}" if p.ratio is not None else ""))
        guard = ("ε does not judge a shift" if p.guard_stops is None else
                 f"ε={p.epsilon:g} would {'' if p.guard_stops else 'not '}have stopped it")
        floor = (f"τ={p.tau:g} would {'' if p.tau_anchors else 'not '}have made it an anchor"
                 + ("" if p.verdict == "loose" or not p.tau_anchors else " (an anchor may still be shifted)"))
        commit = ("" if p.commit_stops is None else
                  f"; the commit guard would {'' if p.commit_stops else 'not '}have stopped it "
                  f"(run's: {'on' if p.run_commit_guard else 'off'})")
        print(f"  guards: {guard} (run's ε={p.run_epsilon:g}); {floor} (run's τ={'none' if p.run_tau is None else f'{p.run_tau:g}'})"
              + commit)
