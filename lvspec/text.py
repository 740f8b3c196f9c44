"""Per-token text pieces whose concatenation is exactly the decoded answer."""

from __future__ import annotations


class Detokenizer:
    """Decodes a growing answer and hands out what each new token adds.

    Byte-level tokens can split one character (or one word) over several ids; decoding the whole prefix
    and holding back an incomplete character keeps every piece valid text.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        full = self._decoded()
        return "" if full.endswith("\ufffd") else self._advance(full)

    def rest(self) -> str:
        """What is still held back when the answer ends inside a character (as replacement characters, the
        way the tokenizer decodes it), so that the pieces add up to the decoded answer."""
        return self._advance(self._decoded())

    def _decoded(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _advance(self, full: str) -> str:
        piece, self.text = full[len(self.text) :], full
        return piece
