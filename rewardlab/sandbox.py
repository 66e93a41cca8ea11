"""Defence in depth for untrusted reward code (an LLM wrote it, and prompts can be injected).

1. :func:`check_source` — a static policy on the AST: imports only from an allow-list, no dunder or
   frame/format attributes, no ``exec``/``eval``/``open``/``getattr``..., no writes to ``self``, no global
   state, size limits. Every rejection names the rule and the line.
2. :func:`restricted_globals` — the namespace a program runs in: an allow-list of builtins, ``np`` as an
   :class:`~rewardlab.arrays.ArrayFacade` (never the numpy module), ``math``; :func:`exec_program`
   freezes module-level values (and rejects those that could keep state), and
   :class:`~rewardlab.program.CompiledReward` hands the program read-only copies of its inputs.
3. :func:`rewardlab.trial.run_trial` — the program runs in a separate process with CPU-time, memory,
   file-size and wall-clock limits on sampled states; output shape, dtype and finiteness are checked.
4. At training time non-finite rewards are reported by :class:`~rewardlab.program.CompiledReward`,
   never silently zeroed.
"""

from __future__ import annotations

import ast
import builtins
import math
import sys
import types
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardlab.aliases import apply_aliases
from rewardlab.arrays import ALLOWED_NAMES, FACADE_TYPES, ArrayFacade
from rewardlab.errors import RewardProgramError
from rewardlab.extras import MODULES as SCIPY_MODULES
from rewardlab.extras import RotationValue, scipy_modules

MAX_SOURCE_BYTES = 100_000
MAX_LINES = 2_000
MAX_AST_NODES = 20_000
MAX_AST_DEPTH = 100  # the policy walk and compile() recurse per level; real programs nest < 30 deep

#: Modules a program may import (each binds a facade or a stub, never the module itself).
ALLOWED_IMPORTS = ("numpy", "numpy.linalg", "math", "typing", "__future__", *SCIPY_MODULES)
_ALLOWED_TEXT = "numpy, numpy.linalg, math, scipy.spatial.distance, scipy.spatial.transform"

#: Names that are never callable or referable, whatever shadows them.
FORBIDDEN_NAMES = frozenset({
    "exec", "eval", "compile", "open", "getattr", "setattr", "delattr", "globals", "locals", "vars",
    "dir", "__import__", "input", "breakpoint", "help", "memoryview", "type", "object", "super",
    "classmethod", "staticmethod", "property", "exit", "quit", "hasattr", "id", "callable",
})

#: Attribute names that lead out of the sandbox (frames, code, files, native memory, format traversal).
FORBIDDEN_ATTRIBUTES = frozenset({
    "format", "format_map", "mro", "tofile", "dump", "dumps", "ctypes", "setflags", "data_ptr",
    "storage", "untyped_storage", "share_memory_", "from_file", "load", "save", "lib", "ctypeslib",
    "memmap", "fromfile", "gi_frame", "gi_code", "gi_yieldfrom", "gi_running", "ag_frame", "ag_code",
    "cr_frame", "cr_code", "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "tb_frame",
    "tb_next", "co_code", "co_consts", "func_globals", "func_code", "with_traceback", "register_hook",
    # numpy: re-enabling writes on a read-only array, reaching the array a view was taken from
    "flags", "base",
    # torch: autograd graph, raw strided views, uninitialised memory (like np.empty)
    "grad_fn", "register_prehook", "as_strided", "new_empty", "new_empty_strided", "new",
})


#: Modules never handed out, not even to library code that imports through a program's frame.
_NEVER_IMPORTED = frozenset({
    "os", "posix", "sys", "subprocess", "socket", "_socket", "ctypes", "_ctypes", "builtins", "importlib",
    "shutil", "io", "_io", "pathlib", "pickle", "marshal", "runpy", "code", "signal", "multiprocessing",
    "threading", "_thread", "gc", "inspect",
})

def _offered_text(prefix: str, names: tuple[str, ...]) -> str:
    return (f"the {prefix} in a reward program is an allow-list, not the module; {prefix} offers: "
            + ", ".join(sorted(names)))


#: module -> (names ``from module import NAME`` may take, the words saying so)
_OFFERED: dict[str, tuple[frozenset[str], str]] = {
    "numpy": (frozenset((*ALLOWED_NAMES, "linalg")), _offered_text("np", (*ALLOWED_NAMES, "linalg"))),
    "numpy.linalg": (frozenset({"norm"}), _offered_text("np.linalg", ("norm",))),
    **{m: (frozenset(names), _offered_text(m, names)) for m, names in SCIPY_MODULES.items()},
}

_SAFE_BUILTIN_NAMES = (
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "frozenset", "int",
    "isinstance", "iter", "len", "list", "map", "max", "min", "next", "pow", "range", "repr", "reversed",
    "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip", "ArithmeticError", "AssertionError",
    "Exception", "IndexError", "KeyError", "NotImplementedError", "OverflowError", "RuntimeError",
    "StopIteration", "TypeError", "ValueError", "ZeroDivisionError", "AttributeError", "LookupError",
    "FloatingPointError", "NameError", "True", "False", "None",
)

_FORBIDDEN_NODES: dict[type, str] = {
    ast.Global: "global statements (hidden state across calls)",
    ast.Nonlocal: "nonlocal statements (hidden state across calls)",
    ast.ClassDef: "class definitions",
    ast.AsyncFunctionDef: "async functions",
    ast.Await: "await",
    ast.Yield: "generators (yield)",
    ast.YieldFrom: "generators (yield from)",
    ast.AsyncFor: "async for",
    ast.AsyncWith: "async with",
    ast.With: "with statements",
}
if hasattr(ast, "TryStar"):
    _FORBIDDEN_NODES[ast.TryStar] = "except* blocks"


def _attribute_violation(name: str) -> tuple[str, str] | None:
    """The rule an attribute name breaks, if any (shared by ``x.name``, ``from m import name`` and
    ``case C(name=...)``, which all look attributes up by name)."""
    if name.startswith("_"):
        return "dunder", f"attribute {name!r} is not allowed (no private or dunder attributes)"
    if name in FORBIDDEN_ATTRIBUTES:
        return "forbidden-attribute", f"attribute {name!r} is not allowed in reward programs"
    if name.endswith("_"):
        return "forbidden-attribute", f"attribute {name!r} is an in-place update (torch's trailing _), not allowed"
    return None


def _reject(rule: str, message: str, node: ast.AST | None = None) -> RewardProgramError:
    return RewardProgramError(rule, message, getattr(node, "lineno", None))


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_immutable_default(node: ast.AST) -> bool:
    if isinstance(node, (ast.Constant, ast.Name, ast.Attribute)):
        return True
    if isinstance(node, ast.UnaryOp):
        return _is_immutable_default(node.operand)
    if isinstance(node, ast.Tuple):
        return all(_is_immutable_default(e) for e in node.elts)
    return False


class _Policy(ast.NodeVisitor):
    """Walks the tree once; raises on the first violation."""

    def __init__(self, module_names: set[str]):
        self.module_names = module_names
        self.function_locals: list[set[str]] = []

    def generic_visit(self, node: ast.AST) -> None:
        for kind, what in _FORBIDDEN_NODES.items():
            if isinstance(node, kind):
                raise _reject("statement", f"{what} are not allowed in reward programs", node)
        super().generic_visit(node)

    # imports ---------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_IMPORTS:
                raise _reject("import", f"import of {alias.name!r} is not allowed (allowed: {_ALLOWED_TEXT})", node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or node.module not in ALLOWED_IMPORTS:
            raise _reject("import", f"import from {node.module!r} is not allowed (allowed: {_ALLOWED_TEXT})", node)
        offered = _OFFERED.get(node.module or "")
        for alias in node.names:
            if alias.name == "*":
                raise _reject("import", f"'from {node.module} import *' is not allowed; import names explicitly", node)
            if alias.name.startswith("_") and node.module != "__future__":
                raise _reject("dunder", f"private name {alias.name!r} cannot be imported", node)
            if node.module != "__future__" and (bad := _attribute_violation(alias.name)):
                raise _reject(bad[0], bad[1], node)
            if offered is not None and alias.name not in offered[0]:
                raise _reject("import", f"cannot import {alias.name!r} from {node.module} ({offered[1]})", node)

    # names and attributes ---------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            raise _reject("forbidden-name", f"{node.id!r} is not available in reward programs", node)
        if node.id.startswith("__") and node.id.endswith("__"):
            raise _reject("dunder", f"dunder name {node.id!r} is not allowed", node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if bad := _attribute_violation(node.attr):
            raise _reject(bad[0], bad[1], node)
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            root = _root_name(node)
            if root == "self":
                raise _reject("write-self", f"the state view (self) is read-only: cannot set .{node.attr}", node)
            raise _reject("write-attribute", f"setting attributes ({root or '?'}.{node.attr}) is not allowed", node)
        self.generic_visit(node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        # `case C(attr=x)` reads C's attribute by name: the same rules as `x.attr`
        for name in node.kwd_attrs:
            if bad := _attribute_violation(name):
                raise _reject(bad[0], bad[1], node)
        self.generic_visit(node)

    # writes -------------------------------------------------------------------------------------
    def _check_target(self, target: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._check_target(elt)
            return
        if isinstance(target, ast.Starred):
            self._check_target(target.value)
            return
        if isinstance(target, ast.Subscript):
            root = _root_name(target)
            if root == "self":
                raise _reject("write-self", "the state view (self) is read-only", target)
            if (root in self.module_names and self.function_locals
                    and root not in self.function_locals[-1]):
                raise _reject("global-state", f"module-level {root!r} is read-only inside functions", target)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_target(target)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_target(node.target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check_target(node.target)
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        self._check_target(node.target)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self._check_target(node.target)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._check_target(target)
        self.generic_visit(node)

    # functions ------------------------------------------------------------------------------------
    def _visit_function(self, node: ast.FunctionDef | ast.Lambda) -> None:
        for default in list(node.args.defaults) + [d for d in node.args.kw_defaults if d is not None]:
            if not _is_immutable_default(default):
                raise _reject("global-state", "mutable default arguments keep state across calls; use None", default)
        local = {a.arg for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs}
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                local.add(sub.id)
        self.function_locals.append(local)
        self.generic_visit(node)
        self.function_locals.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.decorator_list:
            raise _reject("statement", "decorators are not allowed in reward programs", node)
        self._visit_function(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_function(node)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)


def _strip_annotations(tree: ast.Module) -> ast.Module:
    """Remove type hints and ``from __future__`` imports: they never affect the reward."""

    class Strip(ast.NodeTransformer):
        def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
            node.returns = None
            for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                a.annotation = None
            for extra in (node.args.vararg, node.args.kwarg):
                if extra is not None:
                    extra.annotation = None
            self.generic_visit(node)
            return node

        def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
            if node.value is None:  # a bare `x: int`; Pass keeps a body that held only this non-empty
                return ast.copy_location(ast.Pass(), node)
            return ast.copy_location(ast.Assign(targets=[node.target], value=self.visit(node.value)), node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST | None:
            return None if node.module == "__future__" else node

    tree = Strip().visit(tree)
    tree.body = tree.body or [ast.Pass()]
    return ast.fix_missing_locations(tree)


@dataclass
class StaticReport:
    """What the static check learnt about a program."""

    tree: ast.Module
    signature: tuple[str, ...]
    docstring: str | None


def check_source(source: str, entry: str = "compute_dense_reward") -> StaticReport:
    """Apply the static policy; return the (annotation-stripped) tree, or raise RewardProgramError.

    :param source: the program's Python source
    :param entry: the function the program must define at module level
    """
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise _reject("size", f"the program is {len(source.encode())} bytes; the limit is {MAX_SOURCE_BYTES}")
    if source.count("\n") + 1 > MAX_LINES:
        raise _reject("size", f"the program has more than {MAX_LINES} lines")
    try:
        tree = ast.parse(source, filename="<reward program>")
    except SyntaxError as e:
        raise RewardProgramError("syntax", f"{e.msg}", e.lineno) from None
    except ValueError as e:  # null bytes
        raise RewardProgramError("syntax", str(e)) from None
    except (RecursionError, MemoryError):
        raise _reject("size", "the program is nested too deeply for the parser") from None
    nodes, depth, deepest_line = 0, 0, None
    stack: list[tuple[ast.AST, int, int | None]] = [(tree, 0, None)]
    while stack:  # iterative: a recursive walk is what a deep program would overflow
        node, d, line = stack.pop()
        line = getattr(node, "lineno", line)
        nodes += 1
        if d > depth:
            depth, deepest_line = d, line
        stack.extend((child, d + 1, line) for child in ast.iter_child_nodes(node))
    if nodes > MAX_AST_NODES:
        raise _reject("size", f"the program has {nodes} syntax nodes; the limit is {MAX_AST_NODES}")
    if depth > MAX_AST_DEPTH:
        raise RewardProgramError("size", f"the program nests {depth} levels deep; the limit is {MAX_AST_DEPTH}", deepest_line)
    # type hints never run (they are stripped before compiling), so they are not policed either
    tree = apply_aliases(_strip_annotations(tree))

    module_names: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Pass)):
            continue
        if isinstance(stmt, ast.Assign):
            for n in ast.walk(stmt):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    module_names.add(n.id)  # targets and `:=` names
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstrings and stray strings
        if isinstance(stmt, ast.If) and _is_main_guard(stmt):
            continue
        if type(stmt) in _FORBIDDEN_NODES:
            raise _reject("statement", f"{_FORBIDDEN_NODES[type(stmt)]} are not allowed in reward programs", stmt)
        raise _reject(
            "module-level",
            f"{type(stmt).__name__} at module level; only imports, constants and function definitions may be there",
            stmt,
        )
    tree.body = [s for s in tree.body if not (isinstance(s, ast.If) and _is_main_guard(s))]
    _Policy(module_names).visit(tree)

    entries = [s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == entry]
    if not entries:
        raise _reject("entry", f"the program must define {entry}(self, action) at module level")
    fn = entries[-1]
    params = tuple(a.arg for a in fn.args.posonlyargs + fn.args.args)
    if len(params) not in (2, 3) or fn.args.vararg or fn.args.kwarg:
        raise _reject("entry", f"{entry} must take (self, action) or (self, action, obs); it takes ({', '.join(params)})", fn)
    return StaticReport(tree, params, ast.get_docstring(tree))


def _is_main_guard(stmt: ast.If) -> bool:
    t = stmt.test
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__")


# -- the restricted namespace ---------------------------------------------------------------------
class _TypingStub:
    """Stands in for ``typing`` names: programs import them only for (stripped) annotations."""

    def __getattr__(self, name: str) -> _TypingStub:
        if name.startswith("_"):
            raise AttributeError(name)
        return self

    def __getitem__(self, item: Any) -> _TypingStub:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return args[-1] if args else None  # typing.cast(T, x) -> x


_IMMUTABLE_TYPES: tuple[type, ...] = (
    bool, int, float, complex, str, bytes, type(None), type(Ellipsis), range, slice, type,
    types.ModuleType, np.generic, np.dtype, np.ufunc, type(np.clip), ArrayFacade, _TypingStub, *FACADE_TYPES,
    RotationValue,
)
_MAX_FREEZE_DEPTH = 32


class _Frozen:
    """Freezes a program's module-level values after its module body ran, so that no state survives
    between calls: containers become tuples, read-only mappings and frozensets, numpy arrays read-only
    copies; torch tensors (which cannot be read-only) become inference-mode copies, which refuse
    in-place updates, and are also listed in ``guards`` with a snapshot to compare after each call.
    Program functions get their defaults and closure cells frozen too. Anything else that can hold
    state (iterators, generators, bound methods of mutable objects, object arrays) is rejected."""

    def __init__(self, filename: str):
        self.filename = filename
        self.guards: list[tuple[Any, Any]] = []
        self._functions: set[int] = set()

    def __call__(self, value: Any, name: str, depth: int = 0) -> Any:
        if depth > _MAX_FREEZE_DEPTH:
            raise _reject("global-state", f"module-level {name!r} is nested too deeply to be frozen")
        if isinstance(value, np.void):  # a structured scalar can be a writable view into an array
            value = np.array(value)
        elif isinstance(value, _IMMUTABLE_TYPES):
            return value
        if isinstance(value, list | tuple):
            return tuple(self(v, name, depth + 1) for v in value)
        if isinstance(value, dict | types.MappingProxyType):
            return types.MappingProxyType({k: self(v, name, depth + 1) for k, v in value.items()})
        if isinstance(value, set | frozenset):
            return frozenset(self(v, name, depth + 1) for v in value)
        if isinstance(value, np.ndarray):
            if value.dtype.kind == "O":
                raise _reject("global-state", f"module-level {name!r} is an object array (its items stay mutable)")
            value = value.copy()
            value.flags.writeable = False
            return value
        if type(value).__module__.startswith("torch"):
            import torch

            if isinstance(value, torch.Tensor):
                with torch.inference_mode():
                    frozen = value.clone()
                self.guards.append((frozen, frozen.clone()))
                return frozen
            if isinstance(value, torch.dtype | torch.device):
                return value
        if isinstance(value, types.FunctionType):
            if value.__code__.co_filename != self.filename or id(value) in self._functions:
                return value  # a library function (the facade's, print), or one already frozen
            self._functions.add(id(value))
            if value.__defaults__:  # bound when `def` ran, before the names they came from were frozen
                value.__defaults__ = tuple(self(v, name, depth + 1) for v in value.__defaults__)
            if value.__kwdefaults__:
                value.__kwdefaults__ = {k: self(v, name, depth + 1) for k, v in value.__kwdefaults__.items()}
            for cell in value.__closure__ or ():
                try:
                    contents = cell.cell_contents
                except ValueError:  # not yet bound
                    continue
                cell.cell_contents = self(contents, name, depth + 1)
            return value
        if isinstance(value, types.BuiltinMethodType | types.MethodType | types.MethodWrapperType):
            owner = getattr(value, "__self__", None)
            if owner is None or isinstance(owner, _IMMUTABLE_TYPES):
                return value  # math.sqrt, a ufunc's .reduce, (1.0).hex
            raise _reject("global-state", f"module-level {name!r} is a method bound to a mutable "
                          f"{type(owner).__name__}, which keeps state between calls")
        raise _reject("global-state", f"module-level {name!r} is a {type(value).__name__}, which can keep "
                      "state between calls; compute it inside the function")


def restricted_globals(facade: ArrayFacade) -> dict[str, Any]:
    """A fresh globals dict for one program: safe builtins, the facade as the only numpy."""
    modules: dict[str, Any] = {"numpy": facade, "numpy.linalg": facade.linalg, "math": math, "typing": _TypingStub()}

    def guarded_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level == 0 and name in SCIPY_MODULES and name not in modules:
            modules.update(scipy_modules())  # only programs that import scipy pay for loading it
        if level == 0 and name not in modules and name in sys.modules and name.split(".")[0] not in _NEVER_IMPORTED:
            # C code (torch's operators) imports through the running frame's builtins. The program's own
            # import statements were allow-listed statically and `__import__` is unreachable by name, so
            # only library internals get here; they get modules already loaded, never new ones.
            return sys.modules[name]
        if level or name not in modules:
            raise ImportError(f"import of {name!r} is not allowed in reward programs")
        if not fromlist and "." in name:
            return modules[name.split(".")[0]]  # `import numpy.linalg` binds `numpy`, as Python does
        return modules[name]

    safe = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
    safe["print"] = lambda *args, **kwargs: None  # programs may print while debugging; output is dropped
    safe["__import__"] = guarded_import
    return {"__builtins__": safe, "__name__": "reward_program", "np": facade, "math": math}


def exec_program(code: types.CodeType, facade: ArrayFacade, guards: list[tuple[Any, Any]] | None = None) -> dict[str, Any]:
    """Run a checked program's module body in a restricted namespace and freeze its globals.

    :param code: the compiled, statically checked program
    :param facade: the ``np`` it sees
    :param guards: if given, receives ``(tensor, snapshot)`` for each module-level torch tensor, to be
        compared after every call (torch has no read-only tensors)
    """
    namespace = restricted_globals(facade)
    exec(code, namespace)  # noqa: S102 - the code passed check_source; see the module docstring
    freeze = _Frozen(code.co_filename)
    for name, value in list(namespace.items()):
        if not name.startswith("__"):
            namespace[name] = freeze(value, name)
    if guards is not None:
        guards.extend(freeze.guards)
    return namespace
