"""A RunTrace as HTML: the answer token by token, coloured by verdict, anchors marked; one round in detail.

Every fragment carries its own small ``<style>`` block, so it renders the same in the app, a notebook
or a saved file. Model text is untrusted (a model can emit ``<script>``): all of it goes through
``html.escape``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from html import escape
from pathlib import Path

from lvspec.trace import ACCEPTED, VERDICTS, Round, RunTrace, Settings, TokenEvent

IdToText = Callable[[int], str]

# Backgrounds for dark text (#1F2937); token verdicts, then the round-only verdicts reject and skip.
PALETTES: dict[str, dict[str, str]] = {
    "default": {
        "target": "#E5E7EB",
        "exact": "#BBF7D0",
        "loose": "#FDE68A",
        "shift": "#BFDBFE",
        "correction": "#FECACA",
        "bonus": "#E9D5FF",
        "reject": "#FECACA",
        "skip": "#F9FAFB",
    },
    # Okabe–Ito hues mixed with white until dark text reaches a contrast of 8:1 or more.
    "colourblind": {
        "target": "#DDDDDD",
        "exact": "#8CD3C0",
        "loose": "#F5ED84",
        "shift": "#A2D6F3",
        "correction": "#ECB78C",
        "bonus": "#E6BCD3",
        "reject": "#ECB78C",
        "skip": "#F5F5F5",
    },
}
TEXT_COLOUR = "#1F2937"

MEANINGS = {
    "target": "the target's own token (vanilla, or no draft)",
    "exact": "draft token equal to the target's",
    "loose": "filler kept as the draft worded it",
    "shift": "salvaged by position-shift tolerance",
    "correction": "target's token after a rejected draft",
    "bonus": "target's extra token after a fully accepted round",
}

_BASE_CSS = f"""
.lvs{{font-family:system-ui,sans-serif;line-height:1.9;color:{TEXT_COLOUR};background:#FFFFFF;
padding:8px 10px;border-radius:6px}}
.lvs .tok{{white-space:pre-wrap;border-radius:3px;color:{TEXT_COLOUR}}}
.lvs .anchor{{font-weight:700;text-decoration:underline;text-decoration-thickness:2px;text-underline-offset:3px}}
.lvs .tok.empty{{display:inline-block;width:3px;height:1.1em;vertical-align:middle;outline:1px dotted #6B7280}}
.lvs .nl{{color:#6B7280}}
.lvs .legend span.tok{{padding:1px 6px;margin-right:4px}}
.lvs .legend div{{margin:1px 0}}
.lvs table{{border-collapse:collapse;font-size:0.9em}}
.lvs th,.lvs td{{border:1px solid #D1D5DB;padding:2px 6px;text-align:center;white-space:pre}}
.lvs th{{background:#F3F4F6;text-align:left}}
.lvs .stop{{outline:2px solid #DC2626;outline-offset:-2px}}
.lvs [data-pos]{{cursor:pointer}}
.lvs .picked{{box-shadow:0 0 0 3px #2563EB}}
.lvs .tok.false{{outline:2px dashed #B91C1C;outline-offset:1px}}
.lvs .tok.false::after{{content:"✗";color:#B91C1C;font-size:0.75em;vertical-align:super}}
.lvs del{{color:#B91C1C;background:#FEE2E2}}
.lvs ins{{color:#166534;background:#DCFCE7}}
"""


def _style(palette: str) -> str:
    """The shared rules plus this palette's verdict colours, scoped so two palettes can share a page."""
    colours = PALETTES[palette]
    rules = "".join(f".lvs-{palette} .v-{v}{{background:{c}}}\n" for v, c in colours.items())
    return f"<style>{_BASE_CSS}{rules}</style>"


def _wrap(palette: str, body: str) -> str:
    return f'<div class="lvs lvs-{palette}">{_style(palette)}{body}</div>'


def _shown(text: str) -> str:
    """Escaped token text in which a newline stays visible (↵) and still breaks the line."""
    return escape(text).replace("\n", '<span class="nl">↵</span><br>')


def _quoted(token_id: int, id_to_text: IdToText | None) -> str:
    """A token for a tooltip or table cell: its text in quotes with newlines shown, or its id."""
    if id_to_text is None:
        return f"#{token_id}"
    return "“" + id_to_text(token_id).replace("\n", "↵") + "”"


def _number(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def legend_html(palette: str = "default") -> str:
    """Verdict swatches with what each means, and how anchors are marked."""
    rows = [f'<div><span class="tok v-{v}">{v}</span>{escape(MEANINGS[v])}</div>' for v in VERDICTS]
    rows.append(
        '<div><span class="tok anchor v-exact">anchor</span>bold underlined: a visually relevant position, or one '
        "strict by rule (an end token, or a multiple-choice option's letter or word), checked strictly; plain text "
        "is a filler</div>"
    )
    return _wrap(palette, f'<div class="legend">{"".join(rows)}</div>')


def _in_round_positions(tokens: list[TokenEvent]) -> list[int]:
    """Each token's draft position within its round (0 for the first token a round commits)."""
    positions, previous, n = [], None, 0
    for t in tokens:
        n = n + 1 if t.round == previous else 0
        positions.append(n)
        previous = t.round
    return positions


def _tooltip(token: TokenEvent, rnd: Round | None, pos: int, id_to_text: IdToText | None) -> str:
    """Round, verdict, relevance, the target's probability of this token and its own choice there."""
    head = [f"round {token.round}" + (" (prefill)" if token.round == 0 else ""), token.verdict]
    p_this = p_top = choice = None
    if rnd is not None:
        if pos < len(rnd.draft_ids):  # a drafted position: it has probabilities and an anchor flag
            head.append("anchor" if token.anchor else "filler")
            p_top = rnd.p_target_top[pos]
            p_this = rnd.p_draft_token[pos] if token.verdict in ACCEPTED else p_top
        if pos < len(rnd.target_ids):
            choice = rnd.target_ids[pos]
    lines = [" · ".join(head), f"relevance {_number(token.relevance)}", f"target p(this token) {_number(p_this)}"]
    if choice is None:
        lines.append("target's choice —")
    elif choice == token.id:
        lines.append("target's choice: this token")
    else:
        lines.append(f"target's choice {_quoted(choice, id_to_text)} (p {_number(p_top)})")
    return "&#10;".join(escape(line) for line in lines)


def tokens_html(trace: RunTrace, palette: str = "default", id_to_text: IdToText | None = None,
                false: set[int] = frozenset(), picked: tuple[int, int] | None = None) -> str:
    """One ``<span class="tok v-VERDICT [anchor]">`` per TokenEvent, in order, with a tooltip each; the
    tokens at the indices in ``false`` (words the clip contradicts, where its facts are known) marked, and
    the token at ``picked`` (round, position in it) outlined. Each drafted token carries its run, round and
    position (``data-method``/``data-round``/``data-pos``), so a click on it can open it in the inspector."""
    id_to_text = id_to_text or (trace.token_text if trace.vocab else None)
    rounds = {r.index: r for r in trace.rounds}
    spans = []
    for i, (token, pos) in enumerate(zip(trace.tokens, _in_round_positions(trace.tokens))):
        classes = f"tok v-{token.verdict}" + (" anchor" if token.anchor else "") + ("" if token.text else " empty")
        title = _tooltip(token, rounds.get(token.round), pos, id_to_text)
        if i in false:
            classes += " false"
            title += "&#10;✗ not what the clip shows"
        classes += " picked" if (token.round, pos) == picked else ""
        drafted = token.round in rounds and pos < len(rounds[token.round].draft_ids)
        where = f' data-pos="{pos}"' if drafted else ""
        spans.append(
            f'<span class="{classes}" data-round="{token.round}"{where} data-i="{i}" title="{title}">'
            f"{_shown(token.text)}</span>"
        )
    return _wrap(palette, f'<div data-method="{escape(trace.method)}">{"".join(spans)}</div>')


def run_label(video: str | None, prompt: str, s: Settings) -> str:
    """What a run was asked, in one line: the clip, the question and the settings that shape the answer."""
    question = " ".join(prompt.split())
    question = question if len(question) <= 90 else question[:87] + "…"
    draft = " · Self-SD" if s.self_draft else "" if s.draft_keep == 1 else f" · draft reads {s.draft_keep:.0%} of the video"
    return (f"`{Path(video).name if video else 'no clip'}` · “{escape(question)}” · K {s.k} · λ {s.lam:g} · "
            f"ε {s.min_ratio:g} · w {s.window}" + (f" · τ {s.tau:g}" if s.tau else "")
            + (" · commit guard" if s.commit_guard else "") + draft)


def drafted_positions(trace: RunTrace, round_index: int) -> list[tuple[str, int]]:
    """(label, position) of every drafted position of a round, rejected and unexamined ones too: what the
    inspector can show as heat (where each drafted token looks)."""
    rnd = trace.rounds[round_index - 1]
    out = []
    for i, (token, verdict, anchor, score) in enumerate(zip(rnd.draft_ids, rnd.verdicts, rnd.anchor, rnd.relevance)):
        word = trace.token_text(token).strip() or "end of answer"
        out.append((f"d{i + 1} “{word}” · {verdict} · {'anchor' if anchor else 'filler'} · r={score:.3f}", i))
    return out


def exact_match_stop(rnd: Round) -> int | None:
    """The first draft position exact-match SD would reject (None: it would accept them all)."""
    return next((i for i, (d, t) in enumerate(zip(rnd.draft_ids, rnd.target_ids)) if d != t), None)


def round_table_html(
    trace: RunTrace, round_index: int, id_to_text: IdToText | None = None, palette: str = "default",
    picked: int | None = None,
) -> str:
    """One column per draft position: what the draft said, what the target wanted, and why the verdict; the
    ``picked`` position's column outlined, and every cell naming its position (``data-pos``) for a click."""
    id_to_text = id_to_text or (trace.token_text if trace.vocab else None)
    rnd = next((r for r in trace.rounds if r.index == round_index), None)
    if rnd is None:
        raise ValueError(f"no round {round_index} in this trace (rounds 1..{len(trace.rounds)})")
    k = len(rnd.draft_ids)
    if k == 0:
        return _wrap(palette, f"<p>Round {rnd.index}: no draft, the target alone committed one token.</p>")
    stop = exact_match_stop(rnd)
    tau = trace.params.tau

    def relevance(r: float) -> str:
        return f"{r:.3f}" + ("" if tau is None else " ≥ τ" if r >= tau else " < τ")

    def exact_sd(i: int) -> str:
        return "accept" if stop is None or i < stop else "stops here" if i == stop else ""

    rows = {
        "draft": [_quoted(d, id_to_text) for d in rnd.draft_ids],
        "target": [_quoted(t, id_to_text) for t in rnd.target_ids[:k]],
        "verdict": rnd.verdicts,
        **({"why": rnd.why} if rnd.why else {}),  # traces saved before verdicts carried their rule have none
        "target p(draft)": [_number(p) for p in rnd.p_draft_token],
        "target p(own choice)": [_number(p) for p in rnd.p_target_top],
        "relevance": [relevance(r) for r in rnd.relevance],
        "anchor": ["anchor" if a else "filler" for a in rnd.anchor],
        "exact-match SD": [exact_sd(i) for i in range(k)],
    }

    def cell(tag: str, i: int, value: str, classes: tuple[str, ...] = ()) -> str:
        classes += ("stop",) if i == stop else ()
        classes += ("picked",) if i == picked else ()
        attr = f' class="{" ".join(classes)}"' if classes else ""
        return f'<{tag}{attr} data-round="{rnd.index}" data-pos="{i}">{escape(value)}</{tag}>'

    def td(name: str, i: int, value: str) -> str:
        marked = name == "anchor" and rnd.anchor[i]
        return cell("td", i, value, (f"v-{value}",) if name == "verdict" else ("anchor",) if marked else ())

    header = "<tr><th>position</th>" + "".join(cell("th", i, str(i + 1)) for i in range(k)) + "</tr>"
    body = "".join(
        f"<tr><th>{escape(name)}</th>{''.join(td(name, i, v) for i, v in enumerate(values))}</tr>"
        for name, values in rows.items()
    )
    accepted = rnd.accepted
    stop_note = "accept all" if stop is None else f"stop at position {stop + 1}"
    caption = (
        f"Round {rnd.index}: {k} drafted · {accepted} accepted · {rnd.committed} committed · "
        f"exact-match SD would {stop_note}"
    )
    table = (f'<div style="overflow-x:auto" data-method="{escape(trace.method)}"><table>{header}{body}</table>'
             "</div>")
    return _wrap(palette, f"<p>{escape(caption)}</p>{table}")


def word_diff(reference: str, other: str) -> list[tuple[str, str]]:
    """``other`` against ``reference`` word by word: (word, "equal" | "insert" | "delete")."""
    ref, oth = reference.split(), other.split()
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ref, oth, autojunk=False).get_opcodes():
        if tag == "equal":
            out += [(w, "equal") for w in ref[i1:i2]]
            continue
        out += [(w, "delete") for w in ref[i1:i2]]
        out += [(w, "insert") for w in oth[j1:j2]]
    return out


def word_diff_html(reference: str, other: str) -> str:
    """The word diff with deletions struck through in red and insertions underlined in green."""
    tags = {"equal": "{}", "delete": "<del>{}</del>", "insert": "<ins>{}</ins>"}
    return _wrap("default", " ".join(tags[kind].format(escape(w)) for w, kind in word_diff(reference, other)))
