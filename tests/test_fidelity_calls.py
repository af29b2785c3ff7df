"""Changes made through a chain of the notebook's own functions (issue 28, item 1), as pure
logic: a step that calls a function which calls a function that changes its parameter, given a
module-level value at any depth, changes that value (it is an output, not a read-only input).
The runs against nbclient are in tests/test_fidelity_run.py and the corpus."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jup2kub.api import inspect_notebook
from jup2kub.errors import MapRefusedError
from jup2kub.model.pipeline import Pipeline

MakeNb = Callable[..., Path]
Pipe = Callable[..., Pipeline]


@pytest.fixture
def pipe(make_notebook: MakeNb) -> Pipe:
    def run(*cells: Any) -> Pipeline:
        return inspect_notebook(make_notebook(list(cells)), "cells")

    return run


def changed_by_call(p: Pipeline, name: str, call: int = 2, reader: int = 3) -> bool:
    """The calling step hands its changed ``name`` to the reader; False when the plan keeps the
    older value (the reader would see the value before the call)."""
    calling = p.step(f"cell-{call}")
    return name in calling.outputs and p.step(f"cell-{reader}").inputs.get(name) == calling.name


LIS = (
    "def parse(program):\n    return program.replace('(', ' ').replace(')', ' ').split()\n\n"
    "def eval(exp, env):\n"
    "    match exp:\n"
    "        case ['define', name, value]:\n"
    "            env[name] = eval(value, env)\n"
    "        case [x]:\n"
    "            return env.get(x, x)\n"
    "        case str(x):\n"
    "            return env.get(x, x)\n\n"
    "def batch(program):\n    return eval(parse(program), ENV)"
)


def test_a_global_changed_through_a_function_that_assigns_into_its_parameter(pipe: Pipe) -> None:
    p = pipe("ENV = {'pi': 3}", LIS, "batch('(define r 10)')", "print(ENV)")
    assert changed_by_call(p, "ENV")
    assert "ENV" not in p.step("cell-2").readonly_inputs


def test_the_global_passed_deeper_down_the_chain(pipe: Pipe) -> None:
    p = pipe(
        "table = {}",
        "def put(d, k):\n    d[k] = 1\n"
        "def middle(d, k):\n    put(d, k)\n"
        "def top(k):\n    middle(table, k)\n"
        "def outermost():\n    top('a')",
        "outermost()",
        "print(table)",
    )
    assert changed_by_call(p, "table")


def test_a_helper_chain_filling_a_global_directly(pipe: Pipe) -> None:
    p = pipe(
        "grammar = {}",
        "def rule(name, body):\n    grammar[name] = body\n"
        "def rules():\n    rule('stmt', 'PRINT expr')\n    rule('expr', 'NUM')\n"
        "def load():\n    rules()",
        "load()",
        "print(grammar)",
    )
    assert changed_by_call(p, "grammar")


def test_a_global_rebound_in_a_helper_of_a_helper(pipe: Pipe) -> None:
    p = pipe(
        "MODE = 'slow'",
        "def set_mode():\n    global MODE\n    MODE = 'fast'\n"
        "class Config:\n    def apply(self):\n        set_mode()\n"
        "def configure():\n    Config().apply()",
        "configure()",
        "print(MODE)",
    )
    assert changed_by_call(p, "MODE")
    p = pipe(
        "MODE = 'slow'",
        "def set_mode():\n    global MODE\n    MODE = 'fast'\n"
        "class Config:\n    def apply(self):\n        set_mode()\nc = Config()",
        "c.apply()",
        "print(MODE)",
    )
    assert changed_by_call(p, "MODE")


def test_recursion_and_mutual_recursion_end(pipe: Pipe) -> None:
    p = pipe(
        "acc = []",
        "def even(n, out):\n    if n:\n        odd(n - 1, out)\n    else:\n        out.append(n)\n"
        "def odd(n, out):\n    even(n - 1, out) if n else None\n"
        "def walk(n):\n    walk(n - 1) if n > 3 else even(n, acc)",
        "walk(6)",
        "print(acc)",
    )
    assert changed_by_call(p, "acc")


@pytest.mark.parametrize(
    "call",
    [
        "outer(L)",  # plain, under another name
        "outer(d=L)",  # by keyword
        "outer(*[L])",  # spread: may reach any parameter
        "outer(**{'d': L})",
        "many(1, L)",  # into *args
        "named(x=L)",  # into **kwargs
    ],
)
def test_arguments_reach_the_parameter_that_is_changed(pipe: Pipe, call: str) -> None:
    p = pipe(
        "L = []",
        "def g(x):\n    x.append(1)\n"
        "def outer(d):\n    g(d)\n"
        "def many(*items):\n    for item in items:\n        g(item)\n"
        "def named(**kw):\n    for v in kw.values():\n        v.append(2)",
        call,
        "print(L)",
    )
    assert changed_by_call(p, "L"), call


def test_only_the_changed_parameter_s_argument_is_changed(pipe: Pipe) -> None:
    p = pipe(
        "a = []\nb = []",
        "def g(x, y):\n    x.append(len(y))\ndef f(first, second):\n    g(second, first)",
        "f(a, b)",
        "print(a, b)",
    )
    assert changed_by_call(p, "b") and not changed_by_call(p, "a")
    assert p.step("cell-2").readonly_inputs == ["a"]


@pytest.mark.parametrize(
    "change",
    [
        "env.update(k=1)",
        "env['k'] = 1",
        "env.setdefault('k', 1)",
        "del env['old']",
        "env['old'] += 1",
        "env.pop('old')",
        "env.clear()",
    ],
)
def test_every_in_place_change_of_a_parameter_counts(pipe: Pipe, change: str) -> None:
    p = pipe(
        "ENV = {'old': 1}",
        f"def change(env):\n    {change}\ndef run():\n    change(ENV)",
        "run()",
        "print(ENV)",
    )
    assert changed_by_call(p, "ENV"), change


def test_an_attribute_set_on_a_parameter(pipe: Pipe) -> None:
    p = pipe(
        "import types\nstate = types.SimpleNamespace(n=0)",
        "def bump(s):\n    s.n = s.n + 1\ndef tick():\n    bump(state)",
        "tick()",
        "print(state.n)",
    )
    assert changed_by_call(p, "state")


def test_a_local_name_for_the_global_or_the_parameter(pipe: Pipe) -> None:
    p = pipe(
        "ENV = {}",
        "def put(d):\n    target = d\n    target['x'] = 1\n"
        "def run():\n    env = ENV\n    for scope in [env]:\n        put(scope)",
        "run()",
        "print(ENV)",
    )
    assert changed_by_call(p, "ENV")


def test_a_nested_function_changing_its_parameter(pipe: Pipe) -> None:
    p = pipe(
        "log = []",
        "def record(d):\n    def add(x):\n        x.append(1)\n    add(d)\n"
        "def run():\n    record(log)",
        "run()",
        "print(log)",
    )
    assert changed_by_call(p, "log")


def test_the_latest_definition_before_the_call_counts(pipe: Pipe) -> None:
    pure = "def eval(exp, env):\n    return env.get(exp)"
    changing = "def eval(exp, env):\n    env[exp] = 1"
    batch = "def batch(p):\n    return eval(p, ENV)"
    # redefined to change its parameter after batch was defined: batch now changes ENV
    p = pipe(f"ENV = {{}}\n{pure}\n{batch}", changing, "batch('x')", "print(ENV)")
    assert changed_by_call(p, "ENV")
    # redefined to only read: batch no longer changes ENV, which stays a read-only input
    p = pipe(f"ENV = {{}}\n{changing}\n{batch}", pure, "batch('x')", "print(ENV)")
    assert not changed_by_call(p, "ENV")
    assert p.step("cell-2").readonly_inputs == ["ENV"]


METHODS = (
    "def fill(table, key):\n    table[key] = len(table)\n\n"
    "class Machine:\n"
    "    def __init__(self, table):\n"
    "        fill(table, 'init')\n"
    "        self.state = {'pc': 0}\n"
    "    def step(self):\n"
    "        self.advance(self.state)\n"
    "    def advance(self, s):\n"
    "        s['pc'] += 1\n"
    "    def load(self, table, key):\n"
    "        self.put(table, key)\n"
    "    def put(self, t, k):\n"
    "        fill(t, k)\n"
    "    def register(self):\n"
    "        fill(REGISTRY, 'machine')"
)


def test_methods_of_notebook_classes(pipe: Pipe) -> None:
    setup = f"grammar = {{}}\nREGISTRY = {{}}\n{METHODS}"
    # a method passing its argument on through another method to a changing function
    p = pipe(setup, "m = Machine({})", "m.load(grammar, 'k')", "print(grammar)")
    assert changed_by_call(p, "grammar")
    # the constructor changes its argument
    p = pipe(setup, "x = 1", "m = Machine(grammar)", "print(grammar)")
    assert changed_by_call(p, "grammar")
    # a method changing what self holds changes the object itself
    p = pipe(setup, "m = Machine({})", "m.step()", "print(m.state)")
    assert changed_by_call(p, "m")
    # a method changing a global through a function: using the class writes it
    p = pipe(setup, "m = Machine({})", "m.register()", "print(REGISTRY)")
    assert changed_by_call(p, "REGISTRY")


def test_methods_called_on_parameters_and_globals_inside_functions(pipe: Pipe) -> None:
    setup = f"grammar = {{}}\nREGISTRY = {{}}\n{METHODS}\nmachine = Machine({{}})"
    helpers = (
        "def through(m, g):\n    m.load(g, 'p')\n"
        "def prepare():\n    machine.load(grammar, 'q')\n"
        "def announce():\n    machine.register()"
    )
    for call, name in [("through(machine, grammar)", "grammar"), ("prepare()", "grammar")]:
        p = pipe(setup, helpers, call, f"print({name})")
        assert changed_by_call(p, name), call
    p = pipe(setup, helpers, "announce()", "print(REGISTRY)")
    assert changed_by_call(p, "REGISTRY")


def test_a_call_through_an_unknown_callable_stays_the_guard_s(pipe: Pipe) -> None:
    """Not followed: ``L`` stays a read-only input, which the runtime guard checks."""
    p = pipe(
        "L = []\ndef g(x):\n    x.append(1)",
        "def apply(fn, d):\n    fn(d)",
        "apply(g, L)",
        "print(L)",
    )
    assert not changed_by_call(p, "L")
    assert p.step("cell-2").readonly_inputs == ["L"]


def test_a_map_over_a_function_changing_a_global_through_a_chain_is_refused(
    make_notebook: MakeNb,
) -> None:
    nb = make_notebook(
        [
            f"ENV = {{}}\n{LIS}\nprograms = ['(define a 1)', '(define b 2)']",
            "#| map: true\nresults = [batch(p) for p in programs]",
        ]
    )
    with pytest.raises(MapRefusedError, match="'ENV'"):
        inspect_notebook(nb)


def test_a_call_on_a_module_inside_a_function_is_no_change_of_the_module(pipe: Pipe) -> None:
    """``re.compile(..)`` in a helper: ``re`` stays an import (replayed), not a stored value."""
    p = pipe(
        "import re\ntable = {}",
        "def add(t, k):\n    t[k] = re.compile(k)\ndef load():\n    add(table, 'a')",
        "load()",
        "print(table, re.escape('.'))",
    )
    assert changed_by_call(p, "table")
    assert "re" not in p.step("cell-2").outputs and "re" not in p.step("cell-3").inputs


def test_maps_over_notebook_classes(make_notebook: MakeNb) -> None:
    """Building objects whose constructor sets ``self`` runs apart; a method changing a global
    through a helper does not."""
    helpers = (
        "grammar = {}\n"
        "def add(table, k):\n    table[k] = 1\n"
        "class Point:\n    def __init__(self, x):\n        self.x = x\n"
        "    def apply(self, table):  # a name pandas uses for reading only\n"
        "        add(table, self.x)\n"
        "xs = [1, 2, 3]"
    )
    nb = make_notebook([helpers, "#| map: true\npoints = [Point(x) for x in xs]"])
    assert inspect_notebook(nb).maps  # planned as a map
    nb = make_notebook(
        [
            f"{helpers}\npoints = [Point(x) for x in xs]",
            "#| map: true\nfor p in points:\n    p.apply(grammar)",
        ]
    )
    with pytest.raises(MapRefusedError, match="changes its arguments"):
        inspect_notebook(nb)
