"""Code extraction: the reward program inside an LLM's reply.

Replies come in every shape: a fenced ```python block with prose around it, several blocks (a helper,
the reward, a usage example), bare ``` fences, no fences at all, a ``<think>`` reasoning section
first, or a block cut off by the token limit. :func:`extract_program` returns the program's source and
nothing else; the static check and the sandbox trial judge it afterwards, so a program with a plain
syntax error is returned (the check names the line and the error goes back to the LLM), while a reply
that stops inside an open block raises, saying it looks truncated.

The rules, in order:

1. Reasoning is dropped: ``<think>…</think>`` (and ``<thinking>``) sections, everything before a
   lone closing ``</think>`` (servers that strip the opening tag), and an unclosed ``<think>`` to
   the end.
2. Fenced blocks (```` ``` ```` or ``~~~``, any info string; Python, bare or unlabelled-language
   blocks are read, so are others that define the entry point): the *main* block is the **last** one
   that defines ``compute_dense_reward`` and parses (models that revise themselves put the revision
   last), else the last one that defines it.
3. Helpers from other blocks: when the main block uses names it does not define (a function
   ``_distance`` written in an earlier block), every other Python block that defines one of them at
   top level is put before it, in reply order, repeated until nothing is missing. Blocks that define
   nothing the program uses (usage examples, tests) are left out.
4. A main block that is not closed (the reply ended inside it) is returned if it parses; if it does
   not, :class:`CodeExtractionError` says the reply looks truncated.
5. No fences: the whole reply if it parses and defines the entry point; else the code from the first
   line starting with ``import``, ``from``, ``def``, ``class`` or ``@`` from which, with trailing prose
   lines dropped, it parses (a prose line may start with "from"); else from the first such line.
6. ``compute_dense_reward`` written as a method of a class (the stubs show classes) is lifted out of
   the class and dedented, with the module-level imports and functions kept.

No program anywhere raises ``CodeExtractionError("no reward program found in the reply (...)")``.
"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
from dataclasses import dataclass

from rewardlab.errors import UserError

ENTRY = "compute_dense_reward"

_DEF_ENTRY = re.compile(rf"^\s*(async\s+)?def\s+{ENTRY}\s*\(", re.M)
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.#-]*)[^\n`]*$")
_PYTHON_TAGS = {"", "python", "python3", "py", "py3", "ipython", "pycon"}
_CODE_START = re.compile(r"^(import\s|from\s+\w|def\s|async\s+def\s|class\s|@)", re.M)
_KNOWN = set(dir(builtins)) | {"np", "math", "self", "action"}


class CodeExtractionError(UserError):
    """No reward program could be taken from an LLM reply; the message says why, in one line."""


@dataclass
class _Block:
    lang: str
    code: str
    closed: bool
    start_line: int  # 1-based line of the first code line in the reply

    @property
    def python(self) -> bool:
        return self.lang.lower() in _PYTHON_TAGS

    @property
    def has_entry(self) -> bool:
        return bool(_DEF_ENTRY.search(self.code))


def extract_program(text: str) -> str:
    """The reward program in an LLM reply (see the module docstring for the rules).

    :param text: the reply text
    :return: Python source defining ``compute_dense_reward``, ending with a newline
    :raises CodeExtractionError: no program in the reply, or its only program is cut off
    """
    text = strip_reasoning(text.replace("\r\n", "\n").replace("\r", "\n"))
    blocks = fenced_blocks(text)
    if blocks:
        source = _from_blocks(blocks, text)
    else:
        source = _from_unfenced(text)
    return _lift_method(source).strip("\n") + "\n"


def strip_reasoning(text: str) -> str:
    """Remove ``<think>``/``<thinking>`` reasoning sections (see rule 1)."""
    text = re.sub(r"<(think|thinking)>.*?</\1>", "", text, flags=re.S | re.I)
    closing = list(re.finditer(r"</(think|thinking)>", text, flags=re.I))
    if closing:  # an opening tag the server stripped: everything before the close is reasoning
        text = text[closing[-1].end():]
    opening = re.search(r"<(think|thinking)>", text, flags=re.I)
    if opening:  # never closed: the reply ended while reasoning
        text = text[: opening.start()]
    return text


def fenced_blocks(text: str) -> list[_Block]:
    """Every fenced code block, in order; an unclosed one runs to the end (``closed=False``)."""
    lines = text.split("\n")
    blocks: list[_Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2)
        body: list[str] = []
        j = i + 1
        closed = False
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped and stripped[0] == fence[0] and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                closed = True
                break
            body.append(lines[j])
            j += 1
        indent = len(lines[i]) - len(lines[i].lstrip())
        code = "\n".join(body)
        if indent:  # a block inside a list item is indented with its fence
            code = textwrap.dedent(code)
        blocks.append(_Block(lang, code, closed, i + 2))
        i = j + 1
    return blocks


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def _from_blocks(blocks: list[_Block], text: str) -> str:
    with_entry = [b for b in blocks if b.has_entry]
    if not with_entry:
        # Fences with no entry point: perhaps the program sits outside them (rare, but seen).
        outside = _FENCE_BLOCK_RE.sub("", text)
        if _DEF_ENTRY.search(outside):
            return _from_unfenced(outside)
        raise CodeExtractionError(
            f"no reward program found in the reply ({len(blocks)} code block{'s' * (len(blocks) != 1)}, "
            f"none defines {ENTRY}; {_prose_chars(text)} chars of prose)"
        )
    parsing = [b for b in with_entry if _parses(b.code)]
    main = parsing[-1] if parsing else with_entry[-1]
    if not main.closed and not _parses(main.code):
        err = _syntax_error(main.code)
        raise CodeExtractionError(
            f"the reply looks truncated: its code block defining {ENTRY} is not closed and does not "
            f"parse ({err}); raise max_tokens or ask for a shorter program"
        )
    helpers = _helper_blocks(main, [b for b in blocks if b is not main and b.python and _parses(b.code)])
    return "\n\n".join([b.code.strip("\n") for b in helpers] + [main.code.strip("\n")])


_FENCE_BLOCK_RE = re.compile(r"^[ \t]*(`{3,}|~{3,}).*?^[ \t]*\1[ \t]*$", re.M | re.S)


def _helper_blocks(main: _Block, others: list[_Block]) -> list[_Block]:
    """Other blocks defining names the main block (or an added helper) uses and does not define."""
    chosen: list[_Block] = []
    missing = _free_names(main.code)
    changed = True
    while missing and changed:
        changed = False
        for block in others:
            if block in chosen:
                continue
            defined = _top_level_names(block.code)
            if defined & missing:
                chosen.append(block)
                missing = (missing - defined) | (_free_names(block.code) - _defined_in(chosen, main))
                changed = True
    return sorted(chosen, key=lambda b: b.start_line)


def _defined_in(blocks: list[_Block], main: _Block) -> set[str]:
    names = _top_level_names(main.code)
    for b in blocks:
        names |= _top_level_names(b.code)
    return names


def _top_level_names(code: str) -> set[str]:
    """Names a module defines at top level: functions, classes, assignments, imports."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _free_names(code: str) -> set[str]:
    """Names the code reads but never binds anywhere (a loose over-approximation of scoping)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    loaded: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return loaded - bound - _KNOWN


def _from_unfenced(text: str) -> str:
    stripped = text.strip("\n")
    if _DEF_ENTRY.search(stripped) and _parses(stripped):
        return stripped
    # Candidate starts: lines that open code, before the entry point (prose may begin with "from ").
    starts = [m.start() for m in _CODE_START.finditer(text) if _DEF_ENTRY.search(text[m.start():])]
    if not starts:
        raise CodeExtractionError(
            f"no reward program found in the reply ({_prose_chars(text)} chars of prose, no {ENTRY})"
        )
    for start in starts:
        lines = text[start:].rstrip("\n").split("\n")
        # Drop trailing prose lines until the rest parses (and still defines the entry point).
        for end in range(len(lines), 0, -1):
            code = "\n".join(lines[:end])
            if not _DEF_ENTRY.search(code):
                break
            if _parses(code):
                return code
    return text[starts[0]:].rstrip("\n")  # a genuine syntax error: the static check will name the line


def _lift_method(source: str) -> str:
    """Rule 6: ``class X: def compute_dense_reward(self, action)`` becomes a module-level function."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    if any(isinstance(n, ast.FunctionDef) and n.name == ENTRY for n in tree.body):
        return source
    lines = source.split("\n")
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if isinstance(fn, ast.FunctionDef) and fn.name == ENTRY:
                first = min([fn.lineno] + [d.lineno for d in fn.decorator_list]) - 1
                method = textwrap.dedent("\n".join(lines[first: fn.end_lineno]))
                rest = [ast.get_source_segment(source, n) or "" for n in tree.body if n is not cls]
                return "\n\n".join([r for r in rest if r] + [method])
    return source


def _syntax_error(code: str) -> str:
    try:
        ast.parse(code)
    except SyntaxError as e:
        return f"line {e.lineno}: {e.msg}"
    return "it parses"


def _prose_chars(text: str) -> int:
    return len(_FENCE_BLOCK_RE.sub("", text).strip())


__all__ = ["CodeExtractionError", "extract_program", "strip_reasoning", "fenced_blocks"]
