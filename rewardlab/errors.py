"""The one exception type that reaches users as a single clear line (no traceback)."""

import difflib


class UserError(Exception):
    """A problem with the user's input (card, spec, reward program, file, flag).

    The CLI prints ``str(error)`` on one line and exits non-zero; nothing else is shown.
    """


class RewardProgramError(UserError):
    """A reward program was rejected: by the static policy, the sandbox trial or at run time.

    :param rule: short name of the rule that rejected it (``import``, ``dunder``, ``non-finite``, ...)
    :param message: what is wrong, in words
    :param line: 1-based source line, when known
    """

    def __init__(self, rule: str, message: str, line: int | None = None):
        self.rule = rule
        self.message = message
        self.line = line
        where = f" (line {line})" if line else ""
        super().__init__(f"reward program rejected [{rule}]{where}: {message}")


class GenerationInterrupted(UserError):
    """A generation run stopped on a failed request; its work is kept and it can be resumed."""


def one_line(text: str, limit: int = 300) -> str:
    """A message squeezed onto one line (no traceback, no multi-line library errors), at most ``limit`` chars."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def closest(name: str, options: list[str], cutoff: float = 0.6) -> str | None:
    """The option a mistyped ``name`` most likely meant, for "did you mean" hints: the shortest option
    that ``name`` begins (a cut-short name: ``ee_pos`` is ``ee_position``, not the closer-spelt ``qpos``),
    else difflib's closest above ``cutoff``; None when nothing is close."""
    extended = [o for o in options if o.startswith(name) and o != name]
    if extended:
        return min(extended, key=len)
    close = difflib.get_close_matches(name, options, n=1, cutoff=cutoff)
    return close[0] if close else None
