"""What the analysis of a cell yields: per top-level statement, the events (read, def, del,
mutate, alias, call) of module-level names in execution order."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """Something a statement does to a module-level name, in execution order."""

    kind: str  # "read" | "def" | "del" | "mutate" | "alias" | "call"
    name: str  # for a call: the callee as written (``np.random.rand``)
    line: int
    certain: bool = True
    #: for a def: what the value is when it cannot be stored (an open file, a lock, ...)
    unshippable: str | None = None
    #: for an alias: the names whose objects ``name`` may now share (``b = a``, ``for d in
    #: [x, y]``); for a call: the variables passed as arguments
    sources: tuple[str, ...] = ()
    #: for a call: the keyword arguments given (``random_state``, ``ax``, ...)
    keywords: tuple[str, ...] = ()
    #: for a call: the variables passed as ``ax=``/``fig=``-like keywords (drawn on)
    drawn_on: tuple[str, ...] = ()
    #: for a mutate: the name was bound earlier in the same loop body or branch, so the object
    #: changed is that binding's (and its aliases'), not an earlier step's value of the name
    bound_here: bool = False
    #: for a def: ``x += ..`` rebinds ``x`` to the same object when it is mutable (a list), so
    #: the names sharing it keep sharing it
    in_place: bool = False
    #: for a call: which variables go to which parameter (to follow changes through functions)
    site: CallSite | None = None


@dataclass(frozen=True)
class CallSite:
    """A call, with the variables each argument may hold (for a call inside a function: its
    parameters and module-level names, local names traced back to those)."""

    #: the callee's path among the notebook's definitions: ``("batch",)``, ``("Env", "find")``
    #: for ``Env.find`` or ``self.find`` in a method of ``Env``, ``("outer", "inner")`` for a
    #: function defined inside ``outer``; ``("", "m")`` for a method of a local variable
    callee: tuple[str, ...]
    args: tuple[frozenset[str], ...] = ()
    keywords: tuple[tuple[str, frozenset[str]], ...] = ()
    #: variables passed as ``*xs`` or ``**kw``: they may reach any parameter
    spread: frozenset[str] = frozenset()
    #: for a method call on a variable (``self.m(..)``, ``machine.extend(..)``): what the
    #: variable may hold, which the method's first parameter gets
    receiver: frozenset[str] | None = None
    #: ``callee`` is a method of the caller's own class, called on ``self``
    bound: bool = False


@dataclass(frozen=True)
class Summary:
    """What using a function or class reads and writes at call time (its body's free names)."""

    reads: frozenset[str]
    writes: frozenset[str]
    #: a call may modify the objects passed as arguments (the body changes a parameter)
    mutates_args: bool = False
    #: the calls in the body: (callee as written, keywords given), for effects only the whole
    #: notebook can tell (``np.random.seed`` inside ``def seed_everything(s)``)
    calls: frozenset[tuple[str, tuple[str, ...]]] = frozenset()
    #: "function" or "class"
    kind: str = "function"
    #: the parameters in order (the first ``positional`` can be passed by position), and the
    #: names of ``*args`` and ``**kwargs``
    params: tuple[str, ...] = ()
    positional: int = 0
    star: str | None = None
    starstar: str | None = None
    #: the parameters whose objects the body itself may change (also through a local name)
    mutated_params: frozenset[str] = frozenset()
    #: the body's own local names (a nested function changing one changes nothing outside)
    local_names: frozenset[str] = frozenset()
    #: the calls in the body that may reach the notebook's functions (see ``calls``)
    sites: tuple[CallSite, ...] = ()
    #: a class's methods, a function's nested functions
    inner: tuple[tuple[str, Summary], ...] = ()


@dataclass
class Statement:
    """One top-level statement of a cell, with its data-flow events and replay information."""

    cell: int
    line: int
    end_line: int
    source: str
    events: list[Event] = field(default_factory=list)
    #: names bound by a replayable definition (import, def, class, or an if/try of only those)
    code_names: tuple[str, ...] = ()
    summaries: dict[str, Summary] = field(default_factory=dict)
    star_import: bool = False
    #: module name whose state this statement configures (``np.random.seed(0)``), "%" for magics
    setup_root: str | None = None
    file_writes: set[str] = field(default_factory=set)
    #: what ``%%writefile`` writes, by path (the text is in the cell): a ``%run`` of it later
    file_texts: dict[str, str] = field(default_factory=dict)
    #: top-level modules it imports (``import a.b``, ``from a import b``, literal
    #: ``importlib.import_module("a")``): a read of ``a.py`` or ``a/`` when that is local
    module_reads: set[str] = field(default_factory=set)
    literals: set[str] = field(default_factory=set)
    #: names an import binds -> the module or attribute they stand for (``np`` -> ``numpy``)
    imports: dict[str, str] = field(default_factory=dict)
    #: why the statement touches files or the process in ways the analysis cannot follow
    #: (a shell command, a file written under a computed name): the step becomes a barrier
    opaque: str | None = None
    #: it reads files under a computed name: it runs after every earlier step writing files
    opaque_read: bool = False
    #: attribute chains on names (``matplotlib.pyplot.figure``): a chain on an imported package
    #: may reach a submodule that only an earlier import (perhaps another package's) loaded
    chains: set[str] = field(default_factory=set)


@dataclass
class CellAnalysis:
    index: int
    python: str  # the cell translated to plain Python (what a step executes)
    statements: list[Statement]
