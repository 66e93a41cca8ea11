"""Hostile reward programs: each is rejected (static policy, restricted namespace, sandbox trial) or
contained, with a one-line reason naming the rule and, where it applies, the line.

Static attacks are checked with the static policy alone (cheap); attacks that only show at run time
run in-process on a toy card; resource attacks run in the subprocess trial, in a temporary directory
that is checked to stay empty.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from rewardlab.arrays import array_facade
from rewardlab.cards import load_card
from rewardlab.checks import check_program
from rewardlab.errors import RewardProgramError
from rewardlab.program import CompatModeWarning, RewardProgram
from rewardlab.sandbox import restricted_globals
from rewardlab.state import StateExtractor
from rewardlab.trial import TrialLimits, run_trial

FIXTURES = Path(__file__).parent / "fixtures"
CARD = load_card(FIXTURES / "toy-card.yaml")  # fields: cart.position, cart.velocity, pole.angle, qpos (2)
EXTRACTOR = StateExtractor(CARD)
B = 8


def program(text: str) -> tuple[str, int | None]:
    """Dedented source, and the line marked ``# <-`` (the one a rejection must name)."""
    source = textwrap.dedent(text).strip("\n") + "\n"
    marked = [i for i, line in enumerate(source.splitlines(), 1) if "# <-" in line]
    return source, marked[0] if marked else None


def assert_one_line(err: RewardProgramError | str, rule: str, line: int | None) -> None:
    text = str(err)
    assert f"[{rule}]" in text, text
    assert "\n" not in text and "Traceback" not in text, text
    if line is not None:
        assert f"(line {line})" in text, text
    if isinstance(err, RewardProgramError):
        assert err.rule == rule and err.line == line, (err.rule, err.line, text)


def rejected(text: str, rule: str) -> None:
    source, line = program(text)
    with pytest.raises(RewardProgramError) as info:
        RewardProgram(source)
    assert_one_line(info.value, rule, line)


def inputs(backend: str = "numpy", seed: int = 0) -> tuple[np.ndarray, np.ndarray, object, object]:
    rng = np.random.default_rng(seed)
    flat, action = rng.normal(size=(B, EXTRACTOR.dim)), rng.normal(size=(B, 1))
    if backend == "torch":
        return flat, action, torch.as_tensor(flat), torch.as_tensor(action)
    return flat, action, flat.copy(), action.copy()


def call(reward, backend: str = "numpy", seed: int = 0):
    _, _, flat, action = inputs(backend, seed)
    total, _ = reward(EXTRACTOR.view(flat), action)
    return np.asarray(total, dtype=np.float64)


# -- static policy ---------------------------------------------------------------------------------
HEAD = "import numpy as np\n"
FORBIDDEN_MODULES = ["os", "subprocess", "socket", "sys", "importlib", "builtins", "ctypes"]


@pytest.mark.parametrize("module", FORBIDDEN_MODULES)
@pytest.mark.parametrize("form", ["plain", "from", "aliased", "in-function", "second-of-two"])
def test_dangerous_imports_are_rejected(module: str, form: str) -> None:
    stmt = {
        "plain": f"import {module}  # <-",
        "from": f"from {module} import path  # <-",
        "aliased": f"import {module} as np  # <-",
        "second-of-two": f"import math, {module}  # <-",
    }.get(form)
    if stmt is None:
        rejected(f"""
            def compute_dense_reward(self, action):
                import {module}  # <-
                return 0.0
            """, "import")
    else:
        rejected(f"{stmt}\ndef compute_dense_reward(self, action):\n    return 0.0\n", "import")


@pytest.mark.parametrize("text, rule", [
    ("x = __import__('os')  # <-", "forbidden-name"),
    ("from numpy import lib  # <-", "forbidden-attribute"),
    ("from numpy import save  # <-", "forbidden-attribute"),
    ("import numpy.lib  # <-", "import"),
    ("from numpy.ctypeslib import as_array  # <-", "import"),
    ("from . import helpers  # <-", "import"),
    ("from math import *  # <-", "import"),
    ("from math import __loader__  # <-", "dunder"),
], ids=["__import__", "from-numpy-lib", "from-numpy-save", "numpy.lib", "numpy.ctypeslib", "relative", "star", "private"])
def test_import_tricks_are_rejected(text: str, rule: str) -> None:
    rejected(f"{text}\ndef compute_dense_reward(self, action):\n    return 0.0\n", rule)


ESCAPES = {
    "subclasses": ("x = ().__class__.__bases__[0].__subclasses__()  # <-", "dunder"),
    "format-attribute": ("x = '{0.__class__}'.format(action)  # <-", "forbidden-attribute"),
    "format-map": ("x = '{a.__class__}'.format_map({'a': action})  # <-", "forbidden-attribute"),
    "unbound-str-format": ("x = str.format('{0.__globals__}', np.sum)  # <-", "forbidden-attribute"),
    "f-string-dunder": ("x = f'{action.__class__}'  # <-", "dunder"),
    "f-string-format-spec": ("x = f'{action!r:{action.__class__}}'  # <-", "dunder"),
    "generator-frame": ("x = (i for i in []).gi_frame.f_back.f_globals  # <-", "forbidden-attribute"),
    "generator-code": ("x = (i for i in []).gi_code  # <-", "forbidden-attribute"),
    "function-globals": ("x = compute_dense_reward.__globals__  # <-", "dunder"),
    "print-self": ("x = print.__self__  # <-", "dunder"),
    "np.save": ("np.save('x.npy', action)  # <-", "forbidden-attribute"),
    "np.load": ("x = np.load('x.npy')  # <-", "forbidden-attribute"),
    "np.lib": ("x = np.lib  # <-", "forbidden-attribute"),
    "np.ctypeslib": ("x = np.ctypeslib  # <-", "forbidden-attribute"),
    "np.memmap": ("x = np.memmap('x', mode='w+', shape=(3,))  # <-", "forbidden-attribute"),
    "np.fromfile": ("x = np.fromfile('/etc/passwd')  # <-", "forbidden-attribute"),
    "tofile": ("action.tofile('x.bin')  # <-", "forbidden-attribute"),
    "dump": ("action.dump('x.pkl')  # <-", "forbidden-attribute"),
    "ctypes": ("x = action.ctypes.data  # <-", "forbidden-attribute"),
    "flags": ("action.flags['WRITEABLE'] = True  # <-", "forbidden-attribute"),
    "base": ("x = self.qpos.base  # <-", "forbidden-attribute"),
    "torch-in-place": ("action.add_(1)  # <-", "forbidden-attribute"),
    "torch-uninitialised": ("x = action.new_empty((1000,))  # <-", "forbidden-attribute"),
    "torch-as-strided": ("x = action.as_strided((10**6,), (1,))  # <-", "forbidden-attribute"),
    "match-class-dunder": ("match action:\n        case int(__class__=k):  # <-\n            pass", "dunder"),
    "match-class-format": ("match 'x':\n        case str(format=f):  # <-\n            pass", "forbidden-attribute"),
    "lambda-dunder": ("g = lambda: ().__class__  # <-", "dunder"),
    "lambda-eval": ("g = lambda s: eval(s)  # <-", "forbidden-name"),
}


@pytest.mark.parametrize("line, rule", ESCAPES.values(), ids=ESCAPES.keys())
def test_escape_routes_are_rejected(line: str, rule: str) -> None:
    rejected(f"import numpy as np\ndef compute_dense_reward(self, action):\n    {line}\n    return 0.0\n", rule)


@pytest.mark.parametrize("name", [
    "open", "eval", "exec", "compile", "getattr", "setattr", "globals", "locals", "vars", "type", "breakpoint",
    "dir", "input", "help", "memoryview", "object", "super", "exit", "hasattr",
])
def test_forbidden_builtins_are_rejected(name: str) -> None:
    rejected(f"def compute_dense_reward(self, action):\n    f = {name}  # <-\n    return 0.0\n", "forbidden-name")


@pytest.mark.parametrize("line", [
    "self.x = 1  # <-",
    "self.qpos[0] = 1.0  # <-",
    "self.pole.angle[...] = 0.0  # <-",
    "self.qpos += 1.0  # <-",
    "self.qpos[..., 0] += 1.0  # <-",
    "del self.qpos  # <-",
    "a, self.x = 1, 2  # <-",
    "for self.qpos[0] in range(3):  # <-\n        pass",
    "x = [0 for self.qpos[0] in range(3)]  # <-",
])
def test_writes_to_self_are_rejected(line: str) -> None:
    rejected(f"def compute_dense_reward(self, action):\n    {line}\n    return 0.0\n", "write-self")


HIDDEN_STATE = {
    "module-list": ("""
        CALLS = [0]
        def compute_dense_reward(self, action):
            CALLS[0] += 1  # <-
            return 0.0
        """, "global-state"),
    "module-list-for-target": ("""
        BUF = [0.0]
        def compute_dense_reward(self, action):
            for BUF[0] in range(3):  # <-
                pass
            return 0.0
        """, "global-state"),
    "module-dict": ("""
        SEEN = {}
        def compute_dense_reward(self, action):
            SEEN["n"] = 1  # <-
            return 0.0
        """, "global-state"),
    "walrus-module-name": ("""
        X = (BUF := [0.0])
        def compute_dense_reward(self, action):
            BUF[0] = 1.0  # <-
            return 0.0
        """, "global-state"),
    "global-counter": ("""
        COUNT = 0
        def compute_dense_reward(self, action):
            global COUNT  # <-
            COUNT += 1
            return 0.0
        """, "statement"),
    "function-attribute": ("""
        def compute_dense_reward(self, action):
            compute_dense_reward.calls = 1  # <-
            return 0.0
        """, "write-attribute"),
    "mutable-default-literal": ("""
        def helper(x, cache={}):  # <-
            return x
        def compute_dense_reward(self, action):
            return helper(0.0)
        """, "global-state"),
    "mutable-default-call": ("""
        def helper(x, cache=list()):  # <-
            return x
        def compute_dense_reward(self, action):
            return helper(0.0)
        """, "global-state"),
    "mutable-default-lambda": ("""
        def compute_dense_reward(self, action):
            f = lambda x, seen=[]: seen  # <-
            return 0.0
        """, "global-state"),
    "nonlocal-closure": ("""
        def make():
            n = 0
            def bump():
                nonlocal n  # <-
                n += 1
                return n
            return bump
        def compute_dense_reward(self, action):
            return 0.0
        """, "statement"),
    "class-module-level": ("""
        class Memory:  # <-
            calls = 0
        def compute_dense_reward(self, action):
            return 0.0
        """, "statement"),
    "class-in-function": ("""
        def compute_dense_reward(self, action):
            class Memory:  # <-
                calls = 0
            return 0.0
        """, "statement"),
    "decorator": ("""
        def memo(f):
            return f
        @memo
        def compute_dense_reward(self, action):  # <-
            return 0.0
        """, "statement"),
    "generator": ("""
        def gen():
            yield 1  # <-
        def compute_dense_reward(self, action):
            return 0.0
        """, "statement"),
    "with": ("""
        def compute_dense_reward(self, action):
            with action:  # <-
                pass
            return 0.0
        """, "statement"),
    "module-level-call": ("""
        import numpy as np
        np.zeros(3)  # <-
        def compute_dense_reward(self, action):
            return 0.0
        """, "module-level"),
    "module-level-loop": ("""
        for i in range(3):  # <-
            pass
        def compute_dense_reward(self, action):
            return 0.0
        """, "module-level"),
}


@pytest.mark.parametrize("text, rule", HIDDEN_STATE.values(), ids=HIDDEN_STATE.keys())
def test_hidden_state_and_forbidden_statements_are_rejected(text: str, rule: str) -> None:
    rejected(text, rule)


@pytest.mark.parametrize("text, rule", [
    ("def compute_dense_reward(self, action):\n    return (1 +  # <-\n", "syntax"),
    ("def compute_dense_reward(self, action):\n    return 1\x00\n", "syntax"),
    ("def reward(self, action):\n    return 0.0\n", "entry"),
    ("def compute_dense_reward(self):  # <-\n    return 0.0\n", "entry"),
    ("def compute_dense_reward(self, action, *args):  # <-\n    return 0.0\n", "entry"),
    ("def compute_dense_reward(self, action):\n    return " + "+".join(["1"] * 6000) + "\n", "size"),
    ("def compute_dense_reward(self, action):\n    return " + "-" * 20000 + "1\n", "size"),
    ("def compute_dense_reward(self, action):\n    return " + "[" * 120 + "]" * 120 + "  # <-\n", "size"),
    ("X = 1\n" * 2500 + "def compute_dense_reward(self, action):\n    return 0.0\n", "size"),
], ids=["syntax", "null-byte", "no-entry", "one-param", "varargs", "long-chain", "deep-unary", "deep-nesting", "too-long"])
def test_malformed_and_oversized_programs_are_rejected(text: str, rule: str) -> None:
    rejected(text, rule)


def test_check_program_reports_a_static_rejection_without_raising() -> None:
    report = check_program("import socket\ndef compute_dense_reward(self, action):\n    return 0.0\n", CARD, n_states=16)
    assert not report.ok and report.rule == "import" and report.line == 1
    assert "socket" in report.message and "\n" not in report.message


# -- restricted namespace, at run time -----------------------------------------------------------------
def test_namespace_offers_no_dangerous_builtins_and_np_is_not_numpy() -> None:
    namespace = restricted_globals(array_facade("numpy"))
    safe = namespace["__builtins__"]
    for name in ("open", "eval", "exec", "compile", "getattr", "globals", "vars", "type", "breakpoint",
                 "__build_class__", "input", "memoryview", "object"):
        assert name not in safe
    assert namespace["np"] is not np and not hasattr(namespace["np"], "save")
    for name in ("save", "load", "lib", "ctypeslib", "memmap", "fromfile", "frombuffer", "empty"):
        with pytest.raises(AttributeError, match="not offered"):
            getattr(namespace["np"], name)


def test_import_hook_hands_out_only_the_allowed_modules() -> None:
    facade = array_facade("numpy")
    hook = restricted_globals(facade)["__builtins__"]["__import__"]
    assert hook("numpy") is facade and hook("numpy.linalg", fromlist=("norm",)) is facade.linalg
    for name in ("os", "sys", "subprocess", "socket", "builtins", "importlib", "ctypes", "shutil", "pickle"):
        with pytest.raises(ImportError):
            hook(name)
    with pytest.raises(ImportError):
        hook("json", level=1)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_write_to_self_through_a_helper_is_a_read_only_error(backend: str) -> None:
    source, line = program("""
        def clobber(x):
            x[0] = 1.0  # <-
        def compute_dense_reward(self, action):
            clobber(self.qpos)
            return 0.0
        """)
    flat, _, flat_in, action_in = inputs(backend)
    with pytest.raises(RewardProgramError) as info:
        RewardProgram(source).bind(CARD, backend=backend)(EXTRACTOR.view(flat_in), action_in)
    assert_one_line(info.value, "read-only", line)
    np.testing.assert_array_equal(np.asarray(flat_in), flat)  # the caller's states are untouched


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_action_and_obs_are_read_only(backend: str) -> None:
    source, line = program("""
        def compute_dense_reward(self, action, obs):
            action *= 2.0  # <-
            return 0.0
        """)
    obs_source, obs_line = program("""
        def compute_dense_reward(self, action, obs):
            obs[0] = 5.0  # <-
            return 0.0
        """)
    for src, ln in ((source, line), (obs_source, obs_line)):
        flat, action, flat_in, action_in = inputs(backend)
        obs = flat[:, :4].copy()
        obs_in = torch.as_tensor(obs) if backend == "torch" else obs.copy()
        with pytest.warns(CompatModeWarning), pytest.raises(RewardProgramError) as info:
            RewardProgram(src).bind(CARD, backend=backend)(EXTRACTOR.view(flat_in, obs_in), action_in)
        assert_one_line(info.value, "read-only", ln)
        np.testing.assert_array_equal(np.asarray(action_in), action)
        np.testing.assert_array_equal(np.asarray(obs_in), obs)


@pytest.mark.parametrize("route", ["detach()", "data", "numpy()"])
def test_torch_routes_around_the_read_only_guard_are_caught(route: str) -> None:
    # these share memory without the inference-tensor guard; the change is still noticed after the
    # call, even when the program swallows errors, and the caller's tensor never sees it
    source = textwrap.dedent(f"""
        def compute_dense_reward(self, action):
            try:
                q = self.qpos.{route}
                q[0] = 99.0
            except Exception:
                pass
            return 0.0
        """)
    flat, _, flat_in, action_in = inputs("torch")
    with pytest.raises(RewardProgramError, match=r"\[read-only\].*modified its inputs"):
        RewardProgram(source).bind(CARD, backend="torch")(EXTRACTOR.view(flat_in), action_in)
    np.testing.assert_array_equal(flat_in.numpy(), flat)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_module_level_constants_cannot_carry_state_between_calls(backend: str) -> None:
    # Each program tries to count its calls; the constants are frozen, so every call sees the same state.
    attempts = {
        "list-through-helper": """
            CALLS = [0.0]
            def bump(c):
                try:
                    c[0] = c[0] + 1.0
                except TypeError:
                    pass
                return c[0]
            def compute_dense_reward(self, action):
                return bump(CALLS) + 0.0 * self.cart.position
            """,
        "default-bound-to-module-list": """
            SEEN = []
            def bump(seen=SEEN):
                try:
                    seen.append(1.0)
                except AttributeError:
                    pass
                return float(len(seen))
            def compute_dense_reward(self, action):
                return bump() + 0.0 * self.cart.position
            """,
        "closure-from-factory": """
            def make():
                box = [0.0]
                return lambda: box
            BOX = make()
            def compute_dense_reward(self, action):
                b = BOX()
                try:
                    b[0] = b[0] + 1.0
                except TypeError:
                    pass
                return b[0] + 0.0 * self.cart.position
            """,
        "structured-scalar-view": """
            import numpy as np
            V = np.zeros(1, dtype="f8,f8")[0]
            def bump(v):
                try:
                    v["f0"] = v["f0"] + 1.0
                except ValueError:
                    pass
                return v["f0"]
            def compute_dense_reward(self, action):
                return bump(V) + 0.0 * self.cart.position
            """,
        "dict-in-tuple": """
            STATE = ({"n": 0.0},)
            def bump(s):
                try:
                    s["n"] = s["n"] + 1.0
                except TypeError:
                    pass
                return s["n"]
            def compute_dense_reward(self, action):
                return bump(STATE[0]) + 0.0 * self.cart.position
            """,
    }
    for name, text in attempts.items():
        if backend == "torch" and name == "structured-scalar-view":
            continue  # torch has no structured dtypes
        reward = RewardProgram(textwrap.dedent(text)).bind(CARD, backend=backend)
        first, second = call(reward, backend), call(reward, backend)
        np.testing.assert_array_equal(first, second, err_msg=name)
        assert first[0] == 0.0, name


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_module_level_array_cannot_be_mutated(backend: str) -> None:
    source, line = program("""
        import numpy as np
        W = np.array([0.0, 0.0])
        def bump(w):
            w += 1.0  # <-
        def compute_dense_reward(self, action):
            bump(W)
            return W[0] + 0.0 * self.cart.position
        """)
    reward = RewardProgram(source).bind(CARD, backend=backend)
    with pytest.raises(RewardProgramError) as info:
        call(reward, backend)
    assert_one_line(info.value, "read-only", line)


def test_module_level_tensor_changed_behind_the_guard_is_caught() -> None:
    source = textwrap.dedent("""
        import numpy as np
        W = np.array([0.0, 0.0])
        def compute_dense_reward(self, action):
            try:
                w = W.detach()
                w[0] = w[0] + 1.0
            except Exception:
                pass
            return W[0] + 0.0 * self.cart.position
        """)
    reward = RewardProgram(source).bind(CARD, backend="torch", mode="batched")
    with pytest.raises(RewardProgramError, match=r"\[read-only\].*module-level constant"):
        call(reward, "torch")


@pytest.mark.parametrize("text, what", [
    ("BUF = []\npush = BUF.append", "method bound to a mutable list"),
    ("BUF = {}\nget = BUF.setdefault", "method bound to a mutable dict"),
    ("IT = iter(range(100))", "range_iterator"),
    ("G = (i for i in range(100))", "generator"),
    ("M = map(abs, [1, 2])", "map"),
    ("import numpy as np\nA = np.array([[1.0], [2.0, 3.0]], dtype='O')", "object array"),
], ids=["bound-append", "bound-setdefault", "iterator", "generator", "map", "object-array"])
def test_stateful_module_level_values_are_rejected(text: str, what: str) -> None:
    source = text + "\ndef compute_dense_reward(self, action):\n    return 0.0\n"
    with pytest.raises(RewardProgramError) as info:
        RewardProgram(source).bind(CARD)
    assert_one_line(info.value, "global-state", None)
    assert what in str(info.value)


def test_entry_rebound_at_module_level_is_rejected() -> None:
    source = ("def other(self, action):\n    return 1.0\ndef compute_dense_reward(self, action):\n    return 0.0\n"
              "compute_dense_reward = other\n")
    with pytest.raises(RewardProgramError, match=r"\[entry\]"):
        RewardProgram(source).bind(CARD)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_ndarray_is_for_isinstance_only(backend: str) -> None:
    source, line = program("""
        import numpy as np
        def compute_dense_reward(self, action):
            assert isinstance(self.qpos, np.ndarray) and not isinstance(1.0, np.ndarray)
            leak = np.ndarray((1000,))  # <-  uninitialised memory
            return 0.0
        """)
    with pytest.raises(RewardProgramError) as info:
        call(RewardProgram(source).bind(CARD, backend=backend), backend)
    assert_one_line(info.value, "runtime", line)
    assert "np.zeros" in str(info.value)


def test_print_is_harmless(capfd: pytest.CaptureFixture[str]) -> None:
    source = "def compute_dense_reward(self, action):\n    print('reward', action, sep=',')\n    return 1.0\n"
    assert call(RewardProgram(source).bind(CARD)).tolist() == [1.0] * B
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_runtime_errors_are_one_line_with_the_program_line() -> None:
    source, line = program("""
        def compute_dense_reward(self, action):
            raise ValueError("first line\\nsecond line\\n  File 'x', line 1")  # <-
        """)
    with pytest.raises(RewardProgramError) as info:
        call(RewardProgram(source).bind(CARD))
    assert_one_line(info.value, "runtime", line)


def test_deep_recursion_in_process_is_reported() -> None:
    source, line = program("""
        def down(n):
            return down(n + 1)  # <-
        def compute_dense_reward(self, action):
            return down(0)
        """)
    with pytest.raises(RewardProgramError) as info:
        call(RewardProgram(source).bind(CARD))
    assert_one_line(info.value, "recursion", line)


# -- the subprocess trial ----------------------------------------------------------------------------
@pytest.fixture
def trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Runs a trial on the toy card with its temp dir under tmp_path/work and the test's cwd at
    tmp_path/cwd, then checks that both are empty again."""
    rng = np.random.default_rng(0)
    states, actions, obs = rng.normal(size=(32, EXTRACTOR.dim)), rng.normal(size=(32, 1)), rng.normal(size=(32, 4))
    work, cwd = tmp_path / "work", tmp_path / "cwd"
    work.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    def run(source: str, **limits: float):
        report = run_trial(textwrap.dedent(source), CARD.model_dump_json(), states, actions, obs,
                           TrialLimits(**limits), workdir=work)
        assert os.listdir(work) == [] and os.listdir(cwd) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "work"]
        if not report.ok:
            assert_one_line(f"[{report.rule}] " + (f"(line {report.line}) " if report.line else "") + report.message,
                            report.rule, report.line)
        return report

    return run


def test_trial_of_a_good_program_passes_and_printing_is_harmless(trial) -> None:
    report = trial("""
        import numpy as np
        def compute_dense_reward(self, action):
            print("debug", self.pole.angle)
            return -np.abs(self.pole.angle), {"upright": -np.abs(self.pole.angle)}
        """)
    assert report.ok and report.mode == "batched" and set(report.components) == {"upright"}


def test_infinite_loop_hits_the_cpu_limit(trial) -> None:
    report = trial("""
        def compute_dense_reward(self, action):
            while True:
                pass
        """, cpu_s=1, wall_s=10)
    assert not report.ok and report.rule == "cpu-time"


def test_busy_wall_clock_wait_hits_the_timeout(trial) -> None:
    # there is no time module (no sleep): a wait can only spin, and the wall clock stops it
    report = trial("""
        def compute_dense_reward(self, action):
            n = 0
            while n >= 0:
                n += 1
        """, cpu_s=30, wall_s=1.0)
    assert not report.ok and report.rule == "timeout"


@pytest.mark.parametrize("source", [
    "def compute_dense_reward(self, action):\n    x = [0] * 10**10  # <-\n    return 0.0\n",
    "import numpy as np\ndef compute_dense_reward(self, action):\n    x = np.ones((10**6, 10**6))  # <-\n    return 0.0\n",
    "X = 'a' * 10**10  # <-\ndef compute_dense_reward(self, action):\n    return 0.0\n",
], ids=["list", "np.ones", "module-level"])
def test_memory_bombs_hit_the_memory_limit(trial, source: str) -> None:
    report = trial(source, memory_mb=1024)
    assert not report.ok and report.rule == "memory" and report.line == program(source)[1]


def test_deep_recursion_in_the_trial_is_reported_with_its_line(trial) -> None:
    report = trial("def down(n):\n    return down(n + 1)\ndef compute_dense_reward(self, action):\n    return down(0)\n")
    assert not report.ok and report.rule == "recursion" and report.line == 2


def test_trial_rechecks_the_source_itself(trial) -> None:
    # run_trial does not trust its caller: the child applies the static policy again
    report = trial("import subprocess\ndef compute_dense_reward(self, action):\n    return 0.0\n")
    assert not report.ok and report.rule == "import" and report.line == 1


def test_compat_mode_is_reported_by_the_trial(trial) -> None:
    report = trial("""
        def compute_dense_reward(self, action, obs):
            if obs[1] > 0:
                return 1.0
            return 0.0
        """)
    assert report.ok and report.mode == "scalar"


@pytest.mark.parametrize("expression", [
    "obs[4:7]",             # past the end of a 4-entry observation: numpy gives an empty slice
    "obs[2:6]",             # cut short: two entries, not four
    "obs[-6:]",             # starts before the first entry
])
def test_a_slice_past_the_observation_is_rejected_by_the_trial(trial, expression: str) -> None:
    # found by a user: obs[39:42] on MetaWorld's 39-entry observation passed check and trained on 0
    report = trial(f"""
        import numpy as np
        def compute_dense_reward(self, action, obs):
            return -float(np.sum(np.abs({expression})))
        """)
    assert not report.ok and report.rule == "runtime" and report.line == 4, report
    assert "reaches past its 4 entries" in report.message, report.message


def test_a_slice_past_a_field_is_rejected_by_the_trial_in_batched_code(trial) -> None:
    report = trial("""
        import numpy as np
        def compute_dense_reward(self, action):
            return -np.abs(self.qpos[:, 1:3]).sum(axis=-1)  # qpos has 2 entries
        """)
    assert not report.ok and "reaches past its 2 entries" in report.message, report.message


def test_slices_inside_the_axes_pass_the_trial(trial) -> None:
    report = trial("""
        import numpy as np
        def compute_dense_reward(self, action, obs):
            return -float(np.sum(obs[0:4])) - float(np.sum(obs[-4:])) - float(np.sum(obs[4:4])) + float(np.sum(obs[::-1][:2]))
        """)
    assert report.ok, report
