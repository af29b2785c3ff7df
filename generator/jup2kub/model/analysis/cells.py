"""Analysing one cell: its top-level statements, each turned into events in execution order."""

from __future__ import annotations

import ast
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from jup2kub.errors import CellSyntaxError, SplitError
from jup2kub.model.analysis.aliases import dotted_name, target_names, value_sources
from jup2kub.model.analysis.calls import class_summary, function_summary, held_by, site_of
from jup2kub.model.analysis.events import CellAnalysis, Event, Statement
from jup2kub.model.analysis.knowledge import (
    DRAWN_ON_KEYWORDS,
    FILE_CHANGERS,
    FILE_READERS,
    FILE_WRITERS,
    MUTATING_FUNCTIONS,
    MUTATING_METHODS,
    SHELL_CALLS,
    SHELL_MODULES,
)
from jup2kub.model.analysis.scopes import (
    Comprehension,
    ComprehensionVisitor,
    Scope,
    call_name,
    class_free,
    comprehension_free,
    def_time_exprs,
    function_free,
    is_pure,
    root_name,
    unshippable,
)
from jup2kub.model.analysis.shapes import (
    computed_path,
    python_cell_magic,
    replayable,
    setup_root,
    strip_magic_flags,
    top_level_defs,
)
from jup2kub.model.ipython import (
    PYTHON_LINE_MAGICS,
    constant_str,
    expanded_names,
    magic_call,
    translate,
)

#: Shell cell magics: the cell body is a program the analysis cannot follow.
SHELL_CELL_MAGICS = frozenset({"bash", "sh", "script", "system", "perl", "ruby", "sx"})
PATH_TYPES = frozenset({"Path", "PurePath", "PosixPath"})
#: ``%%writefile`` and its alias ``%%file``: the body is written to the file named
WRITEFILE_MAGICS = frozenset({"writefile", "file"})
#: calls importing the module a literal first argument names
IMPORT_CALLS = frozenset({"importlib.import_module", "import_module", "__import__"})
#: Programs that only read (a ``!`` line running one without redirection is not a barrier).
READ_ONLY_PROGRAMS = frozenset(
    {
        "ls",
        "echo",
        "cat",
        "head",
        "tail",
        "wc",
        "pwd",
        "date",
        "whoami",
        "nvidia-smi",
        "du",
        "df",
        "file",
        "which",
        "env",
        "printenv",
        "uname",
        "hostname",
        "nproc",
        "free",
        "grep",
        "find",
        "sort",
        "uniq",
        "stat",
        "md5sum",
        "sha256sum",
        "tree",
        "lscpu",
        "id",
    }
)


class _Emitter(ComprehensionVisitor):
    """Walks module-level statements and expressions, recording events in execution order.

    Inside a conditional region (a loop body, a branch, a handler) ``regions`` holds the names
    bound earlier in that region: a read of one of them is not upward-exposed (``for f in
    files: g = f.strip(); use(g)`` reads neither ``f`` nor ``g`` from an earlier step).
    """

    def __init__(self, analyzer: _CellAnalyzer, stmt: Statement, line_offset: int) -> None:
        self.a = analyzer
        self.stmt = stmt
        self.offset = line_offset
        self.certain = True
        self.regions: list[set[str]] = []

    # events
    def _event(self, kind: str, name: str, node: ast.AST | None) -> None:
        line = self.offset + getattr(node, "lineno", 1) if node is not None else self.stmt.line
        here = kind == "mutate" and any(name in region for region in self.regions)
        self.stmt.events.append(Event(kind, name, line, self.certain, bound_here=here))

    def read(self, name: str, node: ast.AST | None = None) -> None:
        if not any(name in region for region in self.regions):
            self._event("read", name, node)

    def define(
        self,
        name: str,
        node: ast.AST | None = None,
        what: str | None = None,
        *,
        in_place: bool = False,
    ) -> None:
        line = self._line(node)
        self.stmt.events.append(Event("def", name, line, self.certain, what, in_place=in_place))
        if self.regions:
            self.regions[-1].add(name)

    def _line(self, node: ast.AST | None) -> int:
        return self.offset + getattr(node, "lineno", 1) if node is not None else self.stmt.line

    def alias(self, names: Iterable[str], sources: Iterable[str], node: ast.AST) -> None:
        """``names`` may now hold (parts of) the objects of ``sources`` and of each other."""
        names = list(names)
        for name in names:
            shared = tuple(sorted((set(sources) | set(names)) - {name}))
            if shared:
                self.stmt.events.append(
                    Event("alias", name, self._line(node), self.certain, sources=shared)
                )

    def region(self, bound: Iterable[str] = ()) -> _Region:
        return _Region(self, set(bound))

    def _forget(self, name: str) -> None:
        for region in self.regions:
            region.discard(name)

    # statements
    def body(self, stmts: Sequence[ast.stmt], certain: bool) -> set[str]:
        """Walk ``stmts``; return the names they certainly define (for if/try merging)."""
        saved = self.certain
        self.certain = saved and certain
        start = len(self.stmt.events)
        if certain:
            for s in stmts:
                self.visit(s)
        else:
            with self.region():
                for s in stmts:
                    self.visit(s)
        self.certain = saved
        defined: set[str] = set()
        for e in self.stmt.events[start:]:
            if e.kind == "def" and e.certain == (saved and certain):
                defined.add(e.name)
            elif e.kind == "del":
                defined.discard(e.name)
        return defined if certain else set()

    def _branches(
        self, branches: Iterable[tuple[Sequence[ast.stmt], set[str]]], node: ast.AST
    ) -> None:
        """Run alternative branches (each with the names bound on entering it); names every
        branch defines count as certainly defined."""
        common: set[str] | None = None
        for branch, bound in branches:
            saved = self.certain
            self.certain = False
            start = len(self.stmt.events)
            with self.region(bound):
                for s in branch:
                    self.visit(s)
            self.certain = saved
            defined = {e.name for e in self.stmt.events[start:] if e.kind == "def"}
            # a branch "certainly" defines what it assigns at its own top level only; being
            # conservative here just means an extra input, never a missing one
            top = top_level_defs(branch)
            defined &= top
            common = defined if common is None else common & defined
        if self.certain:
            for name in sorted(common or ()):
                self.define(name, node)
        elif self.regions:
            self.regions[-1].update(common or ())

    def target(self, node: ast.expr, what: str | None = None) -> None:
        if isinstance(node, ast.Name):
            self.define(node.id, node, what)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                self.target(elt)
        elif isinstance(node, ast.Starred):
            self.target(node.value)
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            self.visit(node.value)
            if isinstance(node, ast.Subscript):
                self.visit(node.slice)
            root = root_name(node)
            if root:
                self._event("mutate", root, node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        what = unshippable(node.value)
        for t in node.targets:
            self.target(t, what)
        names = [n for t in node.targets for n in target_names(t)]
        self.alias(names, value_sources(node.value), node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        if node.value is not None or not isinstance(node.target, ast.Name):
            self.target(node.target)
        if node.value is not None:
            self.alias(target_names(node.target), value_sources(node.value), node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.read(node.target.id, node.target)
        self.visit(node.value)
        if not isinstance(node.target, ast.Name):
            self.target(node.target)
            return
        # ``lst += other`` extends the object in place: every name sharing it changes
        name = node.target.id
        self._event("mutate", name, node)
        self.define(name, node, in_place=True)
        self.alias([name], value_sources(node.value), node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for t in node.targets:
            self._delete(t)

    def _delete(self, t: ast.expr) -> None:
        if isinstance(t, ast.Name):
            self._event("del", t.id, t)
            self._forget(t.id)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for elt in t.elts:
                self._delete(elt)
        else:
            self.target(t)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        saved = self.certain
        self.certain = False
        with self.region():
            self.target(node.target)
            # the loop variable holds the elements: ``for d in [train, test]: d["x"] = ..``
            self.alias(target_names(node.target), value_sources(node.iter), node)
            for s in node.body:
                self.visit(s)
        with self.region():
            for s in node.orelse:
                self.visit(s)
        self.certain = saved

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self.visit_For(node)

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.test)
        self.body(node.body, certain=False)
        self.body(node.orelse, certain=False)

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        self._branches([(node.body, set()), (node.orelse, set())], node)

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.target(item.optional_vars, unshippable(item.context_expr))
                sources = value_sources(item.context_expr)
                self.alias(target_names(item.optional_vars), sources, node)
        self.body(node.body, certain=True)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> None:
        self.visit_With(node)

    def visit_Try(self, node: ast.Try) -> None:
        # Either the body (and else) ran to the end, or a handler did.
        alternatives: list[tuple[Sequence[ast.stmt], set[str]]] = [
            ([*node.body, *node.orelse], set())
        ]
        for h in node.handlers:
            if h.type is not None:
                self.visit(h.type)
            alternatives.append((h.body, {h.name} if h.name else set()))
        for h in node.handlers:
            if h.name:
                saved = self.certain
                self.certain = False
                self.define(h.name, h)
                self.certain = saved
        self._branches(alternatives, node)
        for h in node.handlers:
            if h.name:  # Python deletes the exception name when the handler ends
                saved = self.certain
                self.certain = False
                self._event("del", h.name, h)
                self.certain = saved
        self.body(node.finalbody, certain=True)

    visit_TryStar = visit_Try

    def visit_Match(self, node: ast.Match) -> None:
        self.visit(node.subject)
        saved = self.certain
        self.certain = False
        for case in node.cases:
            scope = Scope()
            scope.visit(case.pattern)
            for name in sorted(scope.loads):
                self.read(name, case.pattern)
            with self.region():
                for name in sorted(scope.stores):
                    self.define(name, case.pattern)
                if case.guard is not None:
                    self.visit(case.guard)
                for s in case.body:
                    self.visit(s)
        self.certain = saved

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in def_time_exprs(node):
            self.visit(expr)
        self.stmt.summaries[node.name] = function_summary(node, (node.name,))
        self.define(node.name, node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.visit_FunctionDef(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        body_reads, _, _ = class_free(node)
        for name in sorted(body_reads):
            self.read(name, node)
        self.stmt.summaries[node.name] = class_summary(node)
        self.define(node.name, node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            self.define(bound, node)
            self.stmt.imports[bound] = alias.name if alias.asname else bound
            self.stmt.module_reads.add(alias.name.partition(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        if not node.level and node.module:
            self.stmt.module_reads.add(node.module.partition(".")[0])
        for alias in node.names:
            if alias.name == "*":
                self.stmt.star_import = True
            else:
                self.define(alias.asname or alias.name, node)
                self.stmt.imports[alias.asname or alias.name] = f"{module}.{alias.name}"

    def visit_Global(self, node: ast.Global) -> None:  # no effect at module level
        return

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:  # nor this
        return

    # expressions
    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.read(node.id, node)
        elif isinstance(node.ctx, ast.Store):
            self.define(node.id, node)
        else:
            self._event("del", node.id, node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.target(node.target)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]:
            self.visit(expr)
        reads, _ = function_free(node)
        for name in sorted(reads):
            self.read(name, node)

    def _comprehension(self, node: Comprehension) -> None:
        self.visit(node.generators[0].iter)
        reads, walrus = comprehension_free(node)
        for name in sorted(reads):
            self.read(name, node)
        saved = self.certain
        self.certain = False
        for name in sorted(walrus):
            self.define(name, node)
        first = set(map(id, ast.walk(node.generators[0].iter)))
        for call in ast.walk(node):  # draws and changes made by the element expressions
            if isinstance(call, ast.Call) and id(call) not in first:
                self._call_event(call)
                func = call.func
                root = root_name(func.value) if isinstance(func, ast.Attribute) else None
                if (
                    root in reads
                    and isinstance(func, ast.Attribute)
                    and func.attr in MUTATING_METHODS
                ):
                    self._event("mutate", root, call)
        self.certain = saved

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and node.value:
            self.stmt.literals.add(node.value)

    def visit_Call(self, node: ast.Call) -> None:
        magic = magic_call(node)
        if magic is not None:
            self._magic(node, *magic)
            return
        func = node.func
        name = call_name(func)
        first = node.args[0] if node.args else None
        if isinstance(func, ast.Attribute):
            root = root_name(func.value)
            inplace = any(
                k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            direct = isinstance(func.value, ast.Name)
            if root and (
                inplace or func.attr in MUTATING_METHODS or (direct and not is_pure(func.attr))
            ):
                self._event("mutate", root, node)
        if name in MUTATING_FUNCTIONS and first is not None:
            root = root_name(first)
            if root:
                self._event("mutate", root, node)
        self._call_event(node)
        if dotted_name(func) in IMPORT_CALLS and (imported := constant_str(first)):
            self.stmt.module_reads.add(imported.partition(".")[0])
        self._file_effects(node, name, first)
        self._shell_effects(node)
        self.generic_visit(node)

    def _call_event(self, node: ast.Call) -> None:
        """Record the call for what only the whole notebook can tell: which module the callee
        comes from (random generators), and whether a function of the notebook changes its
        arguments."""
        callee = dotted_name(node.func)
        if callee is None:
            return
        args = [*node.args, *(k.value for k in node.keywords)]
        passed = tuple(sorted({r for a in args if (r := root_name(a))}))
        drawn = {
            r for k in node.keywords if k.arg in DRAWN_ON_KEYWORDS and (r := root_name(k.value))
        }
        keywords = tuple(k.arg for k in node.keywords if k.arg)
        self.stmt.events.append(
            Event(
                "call",
                callee,
                self._line(node),
                self.certain,
                sources=passed,
                keywords=keywords,
                drawn_on=tuple(sorted(drawn)),
                site=site_of(node, tuple(callee.split(".")), _held, _receiver(node.func)),
            )
        )
        for name in sorted(drawn):
            self._event("mutate", name, node)

    def _shell(self, command: str, node: ast.AST) -> None:
        """A shell command that only looks reads files (after earlier writers); any other may
        change anything: a barrier."""
        words = command.split()
        program = words[0].rsplit("/", 1)[-1] if words else ""
        if (
            program in READ_ONLY_PROGRAMS
            and not set(">|;&`").intersection(command)
            and "$(" not in command
            and not {"-delete", "-exec", "-i", "--in-place"}.intersection(words)
        ):
            self.stmt.opaque_read = True
        else:
            self._opaque(f"runs a shell command (!{program})", node)

    def _shell_effects(self, node: ast.Call) -> None:
        callee = dotted_name(node.func) or ""
        module, _, function = callee.rpartition(".")
        if module in SHELL_MODULES and function in SHELL_CALLS:
            self._opaque(f"runs a program ({callee})", node)
        elif function == "chdir":
            # replayed in later steps (a setup), which must then find the directory as it was
            self._opaque("changes the working directory", node)

    def _opaque(self, what: str, node: ast.AST) -> None:
        if self.stmt.opaque is None:
            self.stmt.opaque = f"{what}, line {self._line(node)}"

    def _file_effects(self, node: ast.Call, name: str | None, first: ast.expr | None) -> None:
        path_node = first
        for k in node.keywords:
            if k.arg in ("path", "path_or_buf", "fname", "filename", "file", "excel_writer"):
                path_node = k.value
        path = constant_str(path_node)
        computed = path is None and computed_path(path_node)
        receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
        if isinstance(receiver, ast.Call) and call_name(receiver.func) in PATH_TYPES:
            # Path("out.txt").write_text(...): the path is the receiver's
            path_node = receiver.args[0] if receiver.args else None
            path = constant_str(path_node)
            computed = path is None and computed_path(path_node)
        if name == "open":
            mode = constant_str(node.args[1]) if len(node.args) > 1 else "r"
            for k in node.keywords:
                if k.arg == "mode":
                    mode = constant_str(k.value)
            writes = mode is None or any(c in mode for c in "wax+")
            if writes and path:
                self.stmt.file_writes.add(path)
            elif writes and computed:
                self._opaque("writes a file under a computed name", node)
            elif computed:
                self.stmt.opaque_read = True
        elif name in FILE_WRITERS or name in FILE_CHANGERS:
            if path:
                self.stmt.file_writes.add(path)
            elif computed:
                self._opaque(f"writes a file under a computed name ({name})", node)
        elif name in FILE_READERS and computed:
            self.stmt.opaque_read = True

    def _magic(self, node: ast.Call, method: str, args: list[ast.expr]) -> None:
        strings = [constant_str(a) for a in args]
        for s in strings:
            if s:
                self.stmt.literals.add(s)
        if method == "run_line_magic" and len(strings) >= 2 and strings[0] is not None:
            name, arg = strings[0], strings[1] or ""
            if name == "cd":
                self._opaque("changes the working directory (%cd)", node)
            elif name == "run":
                self._run_script(node, arg)
                return
            elif name == "pylab":  # ``from pylab import *`` and numpy's names, as a star import
                self.stmt.star_import = True
            if name in PYTHON_LINE_MAGICS:
                code = strip_magic_flags(arg)
                tree = self.a.parse(code, self.offset + node.lineno - 1, quiet=True)
                if tree is not None:
                    for statement in tree.body:
                        self.visit(statement)
                    return
            for n in sorted(expanded_names(arg)):
                self.read(n, node)
        elif method == "run_cell_magic" and len(strings) >= 3:
            line = strings[1] or ""
            for n in sorted(expanded_names(line)):
                self.read(n, node)
            if strings[0] in SHELL_CELL_MAGICS:
                self._opaque(f"runs a %%{strings[0]} cell", node)
            if strings[0] in WRITEFILE_MAGICS:
                self._writefile(line, strings[2])
        elif method in ("system", "getoutput") and strings and strings[0] is not None:
            for n in sorted(expanded_names(strings[0])):
                self.read(n, node)
            self._shell(strings[0], node)

    def _writefile(self, line: str, text: str | None) -> None:
        words = line.split()
        path = " ".join(w for w in words if not w.startswith("-"))
        if path:
            self.stmt.file_writes.add(path)
            if text is not None and not {"-a", "--append"}.intersection(words):
                self.stmt.file_texts[path] = text

    def _run_script(self, node: ast.Call, arg: str) -> None:
        """``%run script.py``: the script runs in the notebook's namespace (``-i``: seeing its
        names too), so its statements are analysed as this statement's; it reads the file and
        may touch any other one (a barrier). A script the analysis cannot read is refused."""
        try:
            words = shlex.split(arg)
        except ValueError:
            words = arg.split()
        flags = [w for w in words if w.startswith("-")]
        rest = [w for w in words if not w.startswith("-")]
        target = rest[0] if rest else ""
        path = target.replace(".", "/") + ".py" if "-m" in flags else target
        self.stmt.literals.add(path)
        self._opaque(f"runs a script (%run {target})", node)
        source = self.a.script(path)
        tree = None if source is None else self.a.parse(source, 0, quiet=True)
        if tree is None:
            raise SplitError(
                f"%run {target}: the analysis cannot see what the script defines",
                where=f"{self.a.path}: cell {self.a.index}, line {self._line(node)}",
                hint="keep the script beside the notebook, write it with %%writefile in an "
                "earlier cell, or import it as a module",
            )
        start = len(self.stmt.events)
        for statement in tree.body:
            self.visit(statement)
        if "-i" not in flags:  # its own namespace: it reads none of the notebook's names
            defined = {e.name for e in self.stmt.events[start:] if e.kind == "def"}
            self.stmt.events[start:] = [
                e
                for e in self.stmt.events[start:]
                if e.kind != "read" and (e.kind != "mutate" or e.name in defined)
            ]


class _Region:
    """A conditional region of the emitter (see ``_Emitter.regions``)."""

    def __init__(self, emitter: _Emitter, bound: set[str]) -> None:
        self.emitter = emitter
        self.bound = bound

    def __enter__(self) -> None:
        self.emitter.regions.append(self.bound)

    def __exit__(self, *exc: object) -> None:
        self.emitter.regions.pop()


def _held(node: ast.expr) -> frozenset[str]:
    return frozenset(held_by(node))


def _receiver(func: ast.expr) -> frozenset[str] | None:
    """``{obj}`` for a method called on a variable (``obj.m(..)``)."""
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return frozenset({func.value.id})
    return None


class _CellAnalyzer:
    def __init__(
        self, path: str, index: int, source: str, scripts: Mapping[str, str | None]
    ) -> None:
        self.path = path
        self.index = index
        self.source = source
        self.scripts = scripts

    def script(self, name: str) -> str | None:
        """The text of file ``name`` as the cell finds it: what an earlier ``%%writefile``
        wrote (None if written otherwise), else the file beside the notebook."""
        if name in self.scripts or not name:
            return self.scripts.get(name)
        beside = Path(self.path).parent / name
        try:
            return beside.read_text(encoding="utf-8") if beside.is_file() else None
        except (OSError, UnicodeDecodeError):
            return None

    def parse(self, code: str, line_offset: int, *, quiet: bool = False) -> ast.Module | None:
        try:
            return ast.parse(code)
        except SyntaxError as exc:
            if quiet:
                return None
            line = (exc.lineno or 1) + line_offset
            original = self.source.splitlines()
            text = original[line - 1] if 0 < line <= len(original) else exc.text
            raise CellSyntaxError(
                self.path, self.index, line, exc.offset or 0, exc.msg, text
            ) from None

    def statements(self, code: str, line_offset: int) -> list[Statement]:
        tree = self.parse(code, line_offset)
        assert tree is not None
        lines = code.splitlines()
        out: list[Statement] = []
        for i, node in enumerate(tree.body):
            body = python_cell_magic(node)
            if body is not None:
                magic, arg, text = body
                nested = self.statements(text, line_offset + node.lineno)
                if magic == "capture" and arg.split() and not arg.split()[0].startswith("-"):
                    stmt = Statement(
                        self.index, line_offset + node.lineno, line_offset + node.lineno, ""
                    )
                    stmt.events.append(Event("def", arg.split()[0], stmt.line))
                    nested.append(stmt)
                out.extend(nested)
                continue
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            end = node.end_lineno or node.lineno
            shares_line = (i > 0 and (tree.body[i - 1].end_lineno or 0) >= start) or (
                i + 1 < len(tree.body) and tree.body[i + 1].lineno <= end
            )
            source = ast.unparse(node) if shares_line else "\n".join(lines[start - 1 : end])
            stmt = Statement(self.index, line_offset + start, line_offset + end, source)
            _Emitter(self, stmt, line_offset).visit(node)
            stmt.chains = {
                chain
                for n in ast.walk(node)
                if isinstance(n, ast.Attribute)
                and isinstance(n.ctx, ast.Load)
                and (chain := dotted_name(n)) is not None
                and not chain.startswith(".")
            }
            if replayable(node):
                stmt.code_names = tuple(
                    dict.fromkeys(e.name for e in stmt.events if e.kind == "def")
                )
            else:
                stmt.setup_root = setup_root(node)
            out.append(stmt)
        return out


def analyze_cell(
    path: str, index: int, source: str, scripts: Mapping[str, str | None] | None = None
) -> CellAnalysis:
    """Translate IPython syntax in one cell and record what each statement reads and defines.

    ``scripts``: the files earlier cells write, with their text when known (``%%writefile``):
    what a ``%run`` of one finds (see ``written_scripts``)."""
    python = translate(source)
    analyzer = _CellAnalyzer(path, index, source, scripts or {})
    return CellAnalysis(index, python, analyzer.statements(python, 0))


def written_scripts(
    scripts: Mapping[str, str | None], analysis: CellAnalysis
) -> dict[str, str | None]:
    """``scripts`` after the cell of ``analysis``: the files it writes, with their text if
    known."""
    out = dict(scripts)
    for st in analysis.statements:
        for path in st.file_writes:
            out[path] = st.file_texts.get(path)
    return out
