"""Multiple-choice prompts: their lettered options, and the tokens an answer names an option with.

A multiple-choice answer has one fact, the option it picks, and its letter is no visual word: relevance
does not flag it, so a policy that relaxes fillers would keep a draft's letter wherever the target is
unsure of its own, and the answer would change. The decode loop therefore makes these tokens strict by rule.
"""

from __future__ import annotations

import re

LETTERS = "ABCDEFGH"
_OPTION_LINE = re.compile(r"^\(?([A-H])[.)]\s*(.+?)\s*$", re.M)
# How answers write a letter: "B", " B", "(B)", "B.", "The answer is B:"...
_LETTER_FORMS = [(before, after) for before in ("", " ", "(", " (") for after in ("", ".", ")", ":")]


def lettered_options(prompt: str) -> dict[str, str]:
    """The prompt's options by letter, when it lists two or more lines lettered from A on (else empty)."""
    options = dict(_OPTION_LINE.findall(prompt))
    return options if len(options) >= 2 and "".join(options) == LETTERS[: len(options)] else {}


def option_token_ids(tokenizer, prompt: str) -> frozenset[int]:
    """Ids an answer names an option with: each letter in the forms answers write it, and every word of each
    option's text (with and without a leading space). Empty for a prompt that is not multiple choice."""
    options = lettered_options(prompt)

    def words(text: str) -> list[tuple[int, str]]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        return [(i, re.sub(r"\W", "", tokenizer.decode([i]))) for i in ids]

    letters = {i for letter in options for before, after in _LETTER_FORMS
               for i, word in words(f"{before}{letter}{after}") if word == letter}
    texts = {i for text in options.values() for space in ("", " ") for i, word in words(space + text) if word}
    return frozenset(letters | texts)
