"""Which steps the step cache may reuse, and what each one's key must cover besides its code.

A step whose result depends on something the key cannot see is not cacheable: the network,
the clock, the environment, randomness without a seed, files read or written under names the
analysis cannot follow (shell commands, computed paths). Reusing it would show a result that
executing might not give. A step can opt in (``#| cache: true`` on one of its cells, or Kale's
``cache:true`` tag) or out (``cache: false``) whatever the analysis finds.

For a cacheable step this also lists the file names its code spells out (read candidates,
hashed into the key when the run starts it) and the files it writes (kept with the cache entry
and restored when it is reused).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from jup2kub.model.analysis import CellAnalysis
from jup2kub.model.analysis.effects import DRAW, SEED, qualified, random_effect
from jup2kub.model.analysis.modules import local_module_files, module_reads
from jup2kub.model.notebook import Notebook
from jup2kub.model.pipeline import Step
from jup2kub.model.split import cell_options
from jup2kub_runtime.storage.cachekey import MODE, pathlike

#: calls whose result depends on the clock
TIME_CALLS = (
    "time.time",
    "time.time_ns",
    "time.perf_counter",
    "time.perf_counter_ns",
    "time.monotonic",
    "time.monotonic_ns",
    "time.process_time",
    "time.localtime",
    "time.gmtime",
    "time.ctime",
    "time.asctime",
    "time.strftime",
    "datetime.datetime.now",
    "datetime.datetime.today",
    "datetime.datetime.utcnow",
    "datetime.date.today",
    "pandas.Timestamp.now",
    "pandas.Timestamp.today",
    "pandas.Timestamp.utcnow",
    "timeit.",
)
#: calls (or call prefixes, ending in ".") that reach the network or a database
NETWORK_CALLS = (
    "requests.",
    "httpx.",
    "urllib.request.",
    "urllib3.",
    "http.client.",
    "socket.",
    "aiohttp.",
    "boto3.",
    "botocore.",
    "ftplib.",
    "smtplib.",
    "paramiko.",
    "google.cloud.",
    "azure.",
    "pymongo.",
    "redis.",
    "sqlalchemy.create_engine",
    "psycopg2.connect",
    "pymysql.connect",
    "sqlite3.connect",
    "pandas.read_sql",
    "pandas.read_sql_query",
    "pandas.read_sql_table",
    "pandas.read_html",
    "pandas.read_gbq",
    "seaborn.load_dataset",
    "sklearn.datasets.fetch_",
    "tensorflow.keras.datasets.",
    "keras.datasets.",
    "torchvision.datasets.",
    "datasets.load_dataset",
    "yfinance.",
    "wget.",
    "kaggle.",
    "openml.",
    "ucimlrepo.",
)
#: calls listing directories: the files found (and read) are not known ahead
LISTING_CALLS = ("glob.glob", "glob.iglob", "os.listdir", "os.scandir", "os.walk")
LISTING_METHODS = (".glob", ".rglob", ".iterdir")
#: calls removing or moving files: what they leave cannot be restored from an entry
REMOVING_CALLS = (
    "os.remove",
    "os.unlink",
    "os.rename",
    "os.replace",
    "os.rmdir",
    "os.removedirs",
    "shutil.move",
    "shutil.rmtree",
)
#: calls whose result depends on the process' environment or is random by design
ENVIRONMENT_CALLS = ("os.getenv", "os.getpid", "getpass.getuser", "platform.node")
RANDOM_CALLS = ("uuid.uuid1", "uuid.uuid4", "os.urandom", "secrets.", "random.SystemRandom")
#: generator constructors that are unseeded when called without arguments
UNSEEDED_WHEN_BARE = ("numpy.random.default_rng", "numpy.random.RandomState", "random.Random")
TORCH_DRAWS = ("torch.rand", "torch.randn", "torch.randint", "torch.randperm", "torch.normal")
#: magics (``get_ipython().run_line_magic('time', ..)``) that print the clock
TIME_MAGICS = frozenset({"time", "timeit", "prun"})
URL = re.compile(r"^(https?|ftp|s3|gs|gcs|az|abfs|hdfs)://", re.IGNORECASE)
OPT_IN = frozenset({"true", "yes", "on", "enabled", "enable", "1"})
OPT_OUT = frozenset({"false", "no", "off", "disabled", "disable", "0", "never"})


@dataclass(frozen=True)
class StepCache:
    """A step's cacheability (``inspect`` shows it) and what its key covers beyond its code."""

    cacheable: bool
    #: why not (or, opted in, what the opt-in overrides)
    reasons: tuple[str, ...] = ()
    #: "marker" / "tag" when the notebook decided, else None (the analysis did)
    decided_by: str | None = None
    #: file names the code spells out: hashed into the key when the step starts
    reads: tuple[str, ...] = ()
    #: files the step writes (known names): stored with the entry, restored on reuse
    writes: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.decided_by is not None:
            how = "#| cache:" if self.decided_by == "marker" else "the cache: tag"
            state = "cached" if self.cacheable else "not cached"
            extra = f" (despite: {'; '.join(self.reasons)})" if self.reasons else ""
            return f"{state}: set by {how}{extra}"
        if self.cacheable:
            return "cacheable"
        return "not cacheable: " + "; ".join(self.reasons)

    def to_json(self) -> dict[str, object]:
        return {
            "cacheable": self.cacheable,
            "reasons": list(self.reasons),
            **({"decided_by": self.decided_by} if self.decided_by else {}),
        }


@dataclass(frozen=True)
class _CellEffects:
    """What the analysis found about one cell's files (any of its statements)."""

    writes: frozenset[str] = frozenset()
    opaque: str | None = None  # why its effects on files are not followed


def assess(
    nb: Notebook,
    steps: Iterable[Step],
    python: Mapping[int, str],
    secrets: set[str],
    analyses: Iterable[CellAnalysis],
) -> dict[str, StepCache]:
    """Each step's cacheability, from the resolved steps, the cells as plain Python, the
    secret parameters' names and the cells' analyses."""
    by_index = {a.index: a for a in analyses}
    cells = {
        a.index: _CellEffects(
            frozenset(w for st in a.statements for w in st.file_writes),
            _opaque(a),
        )
        for a in by_index.values()
    }
    imports = notebook_imports(python.values())
    written = [w for c in cells.values() for w in c.writes]
    directory = Path(nb.path).parent
    out: dict[str, StepCache] = {}
    for s in steps:
        modules = module_reads(s.cells, [(d.cell, d.line) for d in s.replay], by_index)
        local = local_module_files(modules, directory, written)
        out[s.name] = _assess_step(nb, python, secrets, s, imports, cells, local)
    return out


def _opaque(a: CellAnalysis) -> str | None:
    found = next((st.opaque for st in a.statements if st.opaque), None)
    if found is None and any(st.opaque_read for st in a.statements):
        return "reads files under computed names"
    return found


def _assess_step(
    nb: Notebook,
    python: Mapping[int, str],
    secrets: set[str],
    step: Step,
    imports: Mapping[str, str],
    cells: Mapping[int, _CellEffects],
    local_modules: Iterable[str] = (),
) -> StepCache:
    sources = [python[i] for i in step.cells] + [d.source for d in step.replay]
    trees = [parse_or_empty(src) for src in sources]
    reasons = list(dict.fromkeys(_effects(trees, imports, step)))
    secret = sorted(step.parameters & secrets)
    if secret:
        reasons.append(f"reads secret parameter {', '.join(secret)}")
    if step.barrier is not None:
        reasons.append(f"runs code whose effects on files are not followed ({step.barrier[1]})")
    if step.opaque_read:
        reasons.append("reads files under computed names")
    defining = sorted({d.cell for d in step.replay if d.cell not in step.cells and d.cell >= 0})
    for index in defining:  # a replayed function may write or read files when called
        opaque = cells.get(index, _CellEffects()).opaque
        if opaque:
            reasons.append(f"uses a definition from cell {index}, which {opaque}")
    writes = sorted(
        {w for i in [*step.cells, *defining] for w in cells.get(i, _CellEffects()).writes}
    )
    # a file the step only writes (its name occurs once: in the writing call) is restored on
    # reuse, so what it held before does not count; one the code also names elsewhere (reads
    # it, checks that it exists) counts as it is when the step starts
    mentions = Counter(s for t in trees for s in _strings(t))
    written_only = {w for w in writes if mentions[w] == 1}
    # a local module imported is read too (editing ``mathfoo.py`` re-runs the importer)
    reads = sorted(({s for s in mentions if pathlike(s)} | set(local_modules)) - written_only)
    choice = _choice(nb, step)
    if choice is not None:
        return StepCache(choice[0], tuple(reasons), choice[1], tuple(reads), tuple(writes))
    return StepCache(not reasons, tuple(reasons), None, tuple(reads), tuple(writes))


def _choice(nb: Notebook, step: Step) -> tuple[bool, str] | None:
    """The notebook's own say: ``#| cache: true|false`` or Kale's ``cache:...`` tag."""
    for index in step.cells:
        cell = nb.cells[index]
        value = cell_options(cell.source).get("cache")
        if value is not None:
            word = str(value).strip().lower()
            if word in OPT_IN or word in OPT_OUT:
                return word in OPT_IN, "marker"
        for tag in cell.tags:
            name, _, word = tag.partition(":")
            if name == "cache" and word.strip().lower() in OPT_IN | OPT_OUT:
                return word.strip().lower() in OPT_IN, "tag"
    return None


def parse_or_empty(source: str) -> ast.AST:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return ast.Module(body=[], type_ignores=[])


def notebook_imports(sources: Iterable[str]) -> dict[str, str]:
    """What each imported name stands for, over the whole notebook (``np`` -> ``numpy``)."""
    found: dict[str, str] = {}
    for source in sources:
        for node in ast.walk(parse_or_empty(source)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    found[bound] = alias.name if alias.asname else bound
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    found[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return found


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(name.startswith(p) if p.endswith(".") else name == p for p in patterns)


def named_calls(tree: ast.AST, imports: Mapping[str, str]) -> Iterator[tuple[str, ast.Call]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name is not None:
                yield qualified(name, imports), node
            elif isinstance(node.func, ast.Attribute):  # ``Path("x").unlink()``
                yield f"().{node.func.attr}", node


def _effects(trees: list[ast.AST], imports: Mapping[str, str], step: Step) -> Iterator[str]:
    """Why a step's result may differ between two executions with the same key."""
    calls = [c for t in trees for c in named_calls(t, imports)]
    effects = [random_effect(n, [k.arg or "" for k in c.keywords], imports) for n, c in calls]
    seeded = step.seeded_before or SEED in effects
    names = {n for n, _ in calls}
    for name, call in calls:
        if matches(name, TIME_CALLS):
            yield f"reads the clock ({name})"
        elif matches(name, NETWORK_CALLS):
            yield f"reaches the network or a database ({name})"
        elif matches(name, ENVIRONMENT_CALLS):
            yield f"reads the process environment ({name})"
        elif matches(name, RANDOM_CALLS):
            yield f"draws unseeded randomness ({name})"
        elif name in UNSEEDED_WHEN_BARE and not call.args and not call.keywords:
            yield f"draws unseeded randomness ({name}())"
        elif matches(name, TORCH_DRAWS) and "torch.manual_seed" not in names:
            yield f"draws unseeded randomness ({name})"
        elif name.endswith(".run_line_magic") and _first_string(call) in TIME_MAGICS:
            yield f"prints the clock (%{_first_string(call)})"
        elif matches(name, LISTING_CALLS) or name.endswith(LISTING_METHODS):
            yield f"lists a directory ({name})"
        elif matches(name, REMOVING_CALLS) or name.endswith(".unlink"):
            yield f"removes or moves files ({name})"
        elif _appends(name, call):
            yield f"appends to a file ({name})"
    if DRAW in effects and not seeded:
        drawn = next(n for (n, _), e in zip(calls, effects, strict=True) if e == DRAW)
        yield f"draws from the global random generator without a seed ({drawn})"
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _dotted(node) in ("os.environ", "sys.argv"):
                yield f"reads the process environment ({_dotted(node)})"
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and URL.match(node.value)
            ):
                yield f"reaches the network ({node.value[:60]})"


def _appends(name: str, call: ast.Call) -> bool:
    """``open(f, "a")``, ``to_csv(f, mode="a")``: what the file held before counts."""
    modes = [k.value for k in call.keywords if k.arg == "mode"]
    if name == "open" and len(call.args) > 1:
        modes.append(call.args[1])
    elif isinstance(call.func, ast.Attribute) and call.func.attr == "open" and call.args:
        first = call.args[0]  # ``Path(..).open("a")``: a mode, not a path
        if isinstance(first, ast.Constant) and MODE.match(str(first.value)):
            modes.append(first)
    literal = [m.value for m in modes if isinstance(m, ast.Constant) and isinstance(m.value, str)]
    return any("a" in m or "+" in m for m in literal)


def _first_string(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _strings(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def parameter_reads(values: Mapping[str, object]) -> list[str]:
    """Run parameter values that may name a file (a ``data_path`` parameter)."""
    return sorted(v for v in values.values() if isinstance(v, str) and pathlike(v))
