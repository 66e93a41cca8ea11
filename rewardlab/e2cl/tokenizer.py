"""A word-level tokenizer built from the household's own vocabulary (no downloaded tokenizer).

Text is lowercased and split into words and the punctuation ``. , ( )``; every word the environment
can emit has an id (:func:`rewardlab.household.world.vocabulary`), so ``<unk>`` only appears for text
from outside the env (a user's typo in ``e2cl play``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rewardlab.household.world import vocabulary

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
#: Segment markers of E2CL's three prompts (plan / feedback / correction) and their parts.
MARKERS = ("<plan>", "<feedback>", "<correct>", "<task>", "<obs>", "<history>", "<step>", "<fb>", "<ok>", "<failed>",
           "<object>")
PUNCTUATION = (".", ",", "(", ")")
_SPLIT = re.compile(r"<[a-z]+>|[a-z]+|[.,()]")


class Tokenizer:
    """Maps text to token ids and back.

    :param words: the vocabulary (default: the household's)
    """

    def __init__(self, words: Sequence[str] | None = None):
        self.tokens: list[str] = [PAD, BOS, EOS, UNK, *MARKERS, *PUNCTUATION, *(words or vocabulary())]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.pad, self.bos, self.eos, self.unk = (self.index[t] for t in (PAD, BOS, EOS, UNK))

    def __len__(self) -> int:
        return len(self.tokens)

    @staticmethod
    def split(text: str) -> list[str]:
        return _SPLIT.findall(text.lower())

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, self.unk) for w in self.split(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text (stops at ``<eos>``; punctuation attached to the word before it)."""
        out: list[str] = []
        for i in ids:
            if i == self.eos:
                break
            if i in (self.pad, self.bos):
                continue
            tok = self.tokens[i]
            if tok in (".", ",", ")") and out:
                out[-1] += tok
            elif out and out[-1].endswith("("):
                out[-1] += tok
            else:
                out.append(tok)
        return " ".join(out)

    def unknown(self, text: str) -> list[str]:
        """The words of ``text`` outside the vocabulary."""
        return [w for w in self.split(text) if w not in self.index]

    @classmethod
    def from_tokens(cls, tokens: Sequence[str]) -> Tokenizer:
        """The tokenizer a saved model was trained with (its token list, in order)."""
        tok = cls.__new__(cls)
        tok.tokens = list(tokens)
        tok.index = {t: i for i, t in enumerate(tok.tokens)}
        tok.pad, tok.bos, tok.eos, tok.unk = (tok.index[t] for t in (PAD, BOS, EOS, UNK))
        return tok
