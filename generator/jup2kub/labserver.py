"""The JupyterLab side panel's server half (a jupyter_server extension, enabled on install).

- ``GET  /jup2kub/inspect?path=NB``: the notebook's steps (``inspect --json``), which step each
  cell belongs to, and the DAG as SVG when Graphviz is there.
- ``POST /jup2kub/runs`` ``{"path": NB}``: runs the notebook as saved (``jup2kub run``, in its
  own process, from the notebook's directory as Jupyter runs it); ``GET /jup2kub/runs/ID``: its
  steps' states, then the results notebook's path.
- ``POST /jup2kub/build`` ``{"path": NB}``: writes the chart (``build --no-images``) beside
  the notebook and returns what the command said.
- ``GET  /jup2kub/catalog?q=TEXT``: the step catalog's matches (``catalog search --json``'s
  records) in ``results``; the catalog is the one the CLI uses (``$JUP2KUB_CATALOG``, else the
  default), each with ``lab_path``, its notebook's path under the server's root (or null). None
  there yet, or an empty one: no results and a ``note``; a broken one: a JSON error (500) with
  its message.
- ``GET  /jup2kub/deployed/runs?release=NAME[&namespace=NS]`` or
  ``?path=NB&kafka=BOOTSTRAP[&name=PIPELINE]`` (``&limit=N``, default 20): the recent runs of
  a deployed pipeline, newest first, each step's state (``api.watch_status``'s
  ``recent_runs``): a release through the Kubernetes API (the server's kubeconfig), or the
  notebook's pipeline on its Kafka. The watch is kept between calls (a Kafka one reads only
  what is new) and let go after ``IDLE_SECONDS`` unused.
- ``POST /jup2kub/deployed/results`` ``{"path": NB, "run_id": ID, "release": NAME,
  "namespace": NS}`` or ``{..., "state": DIR}``: the run's results notebook (``api.results``,
  from the release's step pods or the pipeline's state directory), written beside the notebook
  as ``STEM-RUN_ID.ipynb`` (another free name when that one exists: never over a file) and its
  path returned for the front end to open.

Bad input is a 400 with a JSON ``message`` saying what to fix; a pipeline that cannot be read
(Kafka or the cluster unreachable) a 502.

Paths are relative to the server's root directory, as the front end knows them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from jup2kub import api
from jup2kub.catalog.database import default_location
from jup2kub.catalog.records import query_words
from jup2kub.errors import InputError, Jup2KubError
from jup2kub.model.names import check_namespace, check_pipeline_name, check_release_name
from jup2kub_runtime.contract.errors import PermanentError
from jup2kub_runtime.contract.valid_names import check_run_id

#: one line of ``jup2kub run``'s progress where stderr is no terminal
_PROGRESS = re.compile(
    r"^\d\d:\d\d:\d\d step (?P<step>\S+): (?P<what>started|succeeded|failed|not run)"
)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jup2kub.labserver"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    web_app = server_app.web_app
    base = url_path_join(web_app.settings["base_url"], "jup2kub")
    root = Path(server_app.root_dir).resolve()
    runs = _Runs()
    watches = _Watches()
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "inspect"), InspectHandler, {"root": root}),
            (url_path_join(base, "runs"), RunsHandler, {"root": root, "runs": runs}),
            (url_path_join(base, "runs", r"([\w-]+)"), RunHandler, {"root": root, "runs": runs}),
            (url_path_join(base, "build"), BuildHandler, {"root": root}),
            (url_path_join(base, "catalog"), CatalogHandler, {"root": root}),
            (
                url_path_join(base, "deployed", "runs"),
                DeployedRunsHandler,
                {"root": root, "watches": watches},
            ),
            (url_path_join(base, "deployed", "results"), DeployedResultsHandler, {"root": root}),
        ],
    )


def _notebook(root: Path, relative: str | None) -> Path:
    """The notebook's absolute path, never outside the server's root."""
    if not relative:
        raise web.HTTPError(400, "path is required")
    path = (root / relative).resolve()
    if root != path and root not in path.parents:
        raise web.HTTPError(403, "outside the server's root directory")
    if not path.is_file():
        raise web.HTTPError(404, f"no notebook {relative}")
    return path


def _directory(root: Path, relative: str) -> Path:
    """A directory's absolute path, never outside the server's root."""
    path = (root / relative).resolve()
    if root != path and root not in path.parents:
        raise web.HTTPError(403, "outside the server's root directory")
    if not path.is_dir():
        raise web.HTTPError(400, f"no directory {relative}")
    return path


class _Handler(APIHandler):
    def initialize(
        self, root: Path, runs: _Runs | None = None, watches: _Watches | None = None
    ) -> None:
        self.root = root
        self.runs = runs
        self.watches = watches

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise web.HTTPError(400, f"not JSON: {exc}") from exc
        return data if isinstance(data, dict) else {}


class InspectHandler(_Handler):
    @web.authenticated
    def get(self) -> None:
        path = _notebook(self.root, self.get_query_argument("path", None))
        try:
            pipeline = api.inspect_notebook(path)
        except Jup2KubError as exc:
            self.finish(json.dumps({"error": str(exc)}))
            return
        doc = pipeline.to_json()
        doc["cell_steps"] = {str(c): s.name for s in pipeline.steps for c in s.cells}
        doc["levels"] = pipeline.levels()
        doc["skipped"] = pipeline.skipped
        doc["svg"] = api.graph_svg(pipeline)
        self.finish(json.dumps(doc))


class RunsHandler(_Handler):
    @web.authenticated
    def post(self) -> None:
        path = _notebook(self.root, self.body().get("path"))
        assert self.runs is not None
        self.finish(json.dumps(self.runs.start(path, self.root)))


class RunHandler(_Handler):
    @web.authenticated
    def get(self, ident: str) -> None:
        assert self.runs is not None
        state = self.runs.state(ident)
        if state is None:
            raise web.HTTPError(404, f"no run {ident}")
        self.finish(json.dumps(state))


class BuildHandler(_Handler):
    @web.authenticated
    async def post(self) -> None:
        path = _notebook(self.root, self.body().get("path"))
        out = path.with_name(path.stem + "-chart")
        command = [sys.executable, "-m", "jup2kub.cli", "build", path.name, "-o", out.name]
        proc = subprocess.run(
            [*command, "--no-images"],
            cwd=path.parent,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        self.finish(
            json.dumps(
                {
                    "ok": proc.returncode == 0,
                    "chart": str(out.relative_to(self.root)),
                    "output": proc.stdout + proc.stderr,
                }
            )
        )


class CatalogHandler(_Handler):
    @web.authenticated
    async def get(self) -> None:
        text = self.get_query_argument("q", None)
        if text is None:
            raise web.HTTPError(400, "q (the words to search for) is required")
        try:
            limit = int(self.get_query_argument("limit", "50"))
        except ValueError:
            raise web.HTTPError(400, "limit must be a whole number") from None
        if limit < 1:
            raise web.HTTPError(400, "limit must be at least 1")
        try:  # a database, maybe remote: off the server's event loop
            answer = await asyncio.to_thread(search_catalog, text, limit, self.root)
        except Jup2KubError as exc:
            self.set_status(500)
            answer = {"message": str(exc), "reason": "catalog"}
        self.finish(json.dumps(answer))


def _failed(handler: APIHandler, exc: Jup2KubError) -> None:
    """A library error as JSON: 400 for bad input (what to fix), else 502 (what could not be
    read: Kafka, the cluster)."""
    handler.set_status(400 if isinstance(exc, InputError) else 502)
    handler.finish(json.dumps({"message": str(exc), "reason": type(exc).__name__}))


def _text(value: object, what: str) -> str | None:
    """A form field: its text without surrounding blanks, None when empty or missing."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise web.HTTPError(400, f"{what} must be a string")
    return value.strip() or None


def _release_target(release: str, namespace: str | None) -> api.KubeTarget:
    try:
        check_release_name(release, "release")
        if namespace is not None:
            check_namespace(namespace, "namespace")
    except InputError as exc:
        raise web.HTTPError(400, str(exc)) from None
    return api.KubeTarget(namespace=namespace)


class DeployedRunsHandler(_Handler):
    @web.authenticated
    async def get(self) -> None:
        arg = self.get_query_argument
        release = _text(arg("release", None), "release")
        namespace = _text(arg("namespace", None), "namespace")
        path = _text(arg("path", None), "path")
        bootstrap = _text(arg("kafka", None), "kafka")
        name = _text(arg("name", None), "name")
        try:
            limit = int(arg("limit", "20"))
        except ValueError:
            raise web.HTTPError(400, "limit must be a whole number") from None
        if not 1 <= limit <= 200:
            raise web.HTTPError(400, "limit must be between 1 and 200")
        key: tuple[str, ...]
        if release is not None:
            if path is not None or bootstrap is not None:
                raise web.HTTPError(
                    400, "give release (and namespace), or path and kafka: not both"
                )
            target = _release_target(release, namespace)
            key = ("release", release, namespace or "")

            def open_watch() -> api.StatusWatch:
                return api.watch_status(release=release, target=target)

        elif path is not None and bootstrap is not None:
            notebook = _notebook(self.root, path)
            if name is not None:
                try:
                    check_pipeline_name(name)
                except InputError as exc:
                    raise web.HTTPError(400, str(exc)) from None
            # an edited notebook (other steps) is followed anew
            key = ("kafka", str(notebook), str(notebook.stat().st_mtime_ns), bootstrap, name or "")

            def open_watch() -> api.StatusWatch:
                return api.watch_status(notebook, bootstrap, name=name, kafka_timeout=10.0)

        else:
            raise web.HTTPError(
                400,
                "say which pipeline: release (and namespace) for a deployed release, or path "
                "(the notebook) and kafka (its bootstrap, host:port)",
            )
        assert self.watches is not None
        try:
            runs = await asyncio.to_thread(self.watches.recent_runs, key, open_watch, limit)
        except Jup2KubError as exc:
            _failed(self, exc)
            return
        self.finish(json.dumps(runs.to_json()))


class DeployedResultsHandler(_Handler):
    @web.authenticated
    async def post(self) -> None:
        body = self.body()
        notebook = _notebook(self.root, _text(body.get("path"), "path"))
        run_id = _text(body.get("run_id"), "run_id")
        if run_id is None:
            raise web.HTTPError(400, "run_id is required")
        try:
            check_run_id(run_id)
        except PermanentError as exc:
            raise web.HTTPError(400, str(exc)) from None
        release = _text(body.get("release"), "release")
        state_dir = _text(body.get("state"), "state")
        if (release is None) == (state_dir is None):
            raise web.HTTPError(
                400,
                "say where the run is: release (and namespace), or state (the pipeline's state "
                "directory)",
            )
        kwargs: dict[str, Any] = {}
        if release is not None:
            kwargs = {
                "release": release,
                "target": _release_target(release, _text(body.get("namespace"), "namespace")),
            }
        else:
            assert state_dir is not None
            kwargs = {"state": _directory(self.root, state_dir)}
        try:
            status, written = await asyncio.to_thread(
                write_results_beside, notebook, run_id, **kwargs
            )
        except Jup2KubError as exc:
            _failed(self, exc)
            return
        self.finish(
            json.dumps(
                {"run_id": run_id, "status": status, "path": str(written.relative_to(self.root))}
            )
        )


def write_results_beside(notebook: Path, run_id: str, **where: Any) -> tuple[str, Path]:
    """``api.results`` of ``run_id`` written beside ``notebook`` as ``STEM-RUN_ID.ipynb``, or
    ``STEM-RUN_ID-2.ipynb``, ... when taken: assembled in a hidden file there, then linked to
    the first free name (a link never replaces a file), so an existing notebook is never
    overwritten and no reader sees half a notebook. Returns the run's status and the path."""
    scratch = notebook.with_name(f".{notebook.stem}-{uuid.uuid4().hex}.ipynb.part")
    try:
        # no crate: it would be named after the scratch file (the CLI's `results` writes one)
        status, _ = api.results(notebook, run_id, output=scratch, crate=False, **where)
        for n in range(1, 1000):
            suffix = "" if n == 1 else f"-{n}"
            target = notebook.with_name(f"{notebook.stem}-{run_id}{suffix}.ipynb")
            try:
                os.link(scratch, target)
            except FileExistsError:
                continue
            return status, target
        raise InputError(
            f"no free name for the results notebook of run {run_id}",
            where=str(notebook.parent),
            hint="remove some of its results notebooks",
        )
    finally:
        scratch.unlink(missing_ok=True)


class _Watches:
    """The deployed pipelines the Runs view follows, each kept open between its refreshes
    (a Kafka watch reads only what is new since) and closed once unused for
    ``IDLE_SECONDS``. One call at a time per watch (they are not thread-safe)."""

    IDLE_SECONDS = 600.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[tuple[str, ...], tuple[api.StatusWatch, threading.Lock, float]] = {}

    def recent_runs(
        self, key: tuple[str, ...], start: Callable[[], api.StatusWatch], limit: int
    ) -> api.RecentRuns:
        now = time.monotonic()
        with self.lock:
            idle = [k for k, (_, _, used) in self.open.items() if now - used > self.IDLE_SECONDS]
            closing = [self.open.pop(k)[0] for k in idle]
            entry = self.open.get(key)
            if entry is not None:
                self.open[key] = (entry[0], entry[1], now)
        for watch in closing:
            watch.close()
        if entry is None:
            watch = start()  # connecting: outside the lock, other pipelines go on
            with self.lock:
                entry = self.open.setdefault(key, (watch, threading.Lock(), now))
            if entry[0] is not watch:  # another request opened it meanwhile
                watch.close()
        watch, lock = entry[0], entry[1]
        try:
            with lock:
                return watch.recent_runs(limit)
        except Exception:
            with self.lock:  # a broken watch is not kept: the next call opens a new one
                if self.open.get(key, (None,))[0] is watch:
                    del self.open[key]
            watch.close()
            raise


def search_catalog(text: str, limit: int = 50, root: Path | None = None) -> dict[str, Any]:
    """The catalog's steps matching ``text``, as ``catalog search --json`` gives them, with
    their notebooks' paths under ``root`` (for the panel to open them); a catalog file not
    there yet is not created (no results, a note)."""
    location = default_location()
    answer: dict[str, Any] = {"catalog": None, "query": text, "results": [], "note": None}
    if "://" not in location and not Path(location).expanduser().exists():
        answer["catalog"] = location
        answer["note"] = (
            f"no step catalog at {location} yet: `jup2kub build` or `jup2kub catalog add "
            "NOTEBOOK` records steps there"
        )
        return answer
    with api.open_catalog(location) as store:
        answer["catalog"] = store.shown
        if not store.count():
            answer["note"] = f"the step catalog {store.shown} is empty"
        elif not query_words(text):
            answer["note"] = "type a name, variable, package or word to search for"
        else:
            found = store.search(text, limit)
            answer["results"] = [
                {**r.to_json(), "matched": m, "lab_path": _under(root, r.notebook)}
                for r, m in found
            ]
            if not found:
                answer["note"] = f"no catalogued step matches {text!r}"
    return answer


def _under(root: Path | None, notebook: str) -> str | None:
    """``notebook``'s path relative to ``root``, if it is under it."""
    if root is None:
        return None
    path = (root / notebook).resolve()
    return str(path.relative_to(root)) if root in path.parents else None


class _Runs:
    """Runs started from the panel: ``jup2kub run`` processes and what their progress says."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, dict[str, Any]] = {}

    def start(self, path: Path, root: Path) -> dict[str, Any]:
        ident = uuid.uuid4().hex[:12]
        output = path.with_name(path.stem + "-results.ipynb")
        state: dict[str, Any] = {
            "id": ident,
            "steps": {},
            "done": False,
            "ok": None,
            "results": str(output.relative_to(root)),
            "log": "",
            "started": time.time(),
        }
        with self.lock:
            self.runs[ident] = state
        command = [sys.executable, "-m", "jup2kub.cli", "run", path.name, output.name]
        threading.Thread(
            target=self._follow, args=(state, command, path.parent), daemon=True
        ).start()
        return dict(state)

    def state(self, ident: str) -> dict[str, Any] | None:
        with self.lock:
            state = self.runs.get(ident)
            return None if state is None else json.loads(json.dumps(state))

    def _follow(self, state: dict[str, Any], command: list[str], cwd: Path) -> None:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "J2K_PROGRESS_INTERVAL": "5"},
        )
        assert proc.stderr is not None
        for line in proc.stderr:
            m = _PROGRESS.match(line)
            with self.lock:
                if m:
                    what = {"not run": "blocked", "started": "running"}.get(m["what"], m["what"])
                    state["steps"][m["step"]] = what
                else:
                    state["log"] += line
        stdout = proc.stdout.read() if proc.stdout else ""
        code = proc.wait()
        with self.lock:
            state["log"] += stdout
            state["done"], state["ok"] = True, code == 0
