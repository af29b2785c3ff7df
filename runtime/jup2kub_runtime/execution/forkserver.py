"""A fork server for the local runner (Linux): each step's process is forked from one that has
already imported what the steps import, so a step does not pay Python's start and the imports.

Started once per run (``jup2kub_runtime.FORK_SERVER_MODULE`` names this module)::

    python -m jup2kub_runtime.forkserver --parent PID [--spec step.json ...] [--local DIR ...]

It imports ahead what the specs import (``preimport``: quiet imports only, restarting itself
without a noisy one), compiles their cells, then reads requests, one JSON object a line, on
stdin::

    {"id": "a", "spec": PATH, "state": DIR, "run_id": ID, "params": JSON, "stdout": PATH,
     "stderr": PATH}

and forks one child per request. The child is the step's process: its stdout and stderr go to
the given files, it runs exactly what ``python -m jup2kub_runtime.step_run`` runs
(``step_run.execute_once``) and exits with the same code. Events, one JSON object a line, on
stdout: ``{"event": "started", "id", "pid"}`` once forked, ``{"event": "exited", "id", "pid",
"code"}`` once reaped (``code`` as ``Popen.returncode``: minus the signal's number if killed).
End of input: the children still running are killed, reaped and reported, then it exits.

Nothing outlives the command: the server dies with its parent (PR_SET_PDEATHSIG), and each
child with the server.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import json
import os
import select
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from .. import FORK_SERVER_MODULE
from ..contract.errors import StepRuntimeError
from ..contract.spec import StepSpec
from . import preimport, step_run
from .lifetime import die_with_parent
from .step_run import execute_once


class Server:
    """Reads requests, forks, reaps; single-threaded (a fork copies only the calling thread)."""

    def __init__(self, specs: dict[str, StepSpec]) -> None:
        self.specs = specs
        self.pid = os.getpid()
        # private descriptors for the protocol: stray output must not corrupt it
        self.requests = os.dup(0)
        self.events = os.dup(1)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(2, 1)
        os.close(null)
        self.children: dict[int, str] = {}
        self.broken = False  # the events pipe is closed: the runner is gone
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner ends this server itself

    def serve(self) -> int:
        pending = b""
        while True:
            self._reap(block=False)
            ready, _, _ = select.select([self.requests, self.wake_r], [], [])
            if self.wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 4096):
                        pass
            if self.requests not in ready:
                continue
            data = os.read(self.requests, 65536)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip() and not self.broken:
                    self._handle(line)
            if self.broken:
                break
        self._stop()
        return 0

    def _handle(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self._emit({"event": "error", "message": f"bad request: {exc}"})
            return
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = self._child(request)
            finally:
                os._exit(code)
        self.children[pid] = str(request.get("id"))
        self._emit({"event": "started", "id": str(request.get("id")), "pid": pid})

    def _child(self, request: dict[str, Any]) -> int:
        """In the forked child: become the step's process, run the step, return its code."""
        die_with_parent(self.pid)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in (self.requests, self.events, self.wake_r, self.wake_w):
            os.close(fd)
        _redirect(1, str(request.get("stdout") or os.devnull))
        _redirect(2, str(request.get("stderr") or os.devnull))
        _reseed_numpy()
        os.environ.pop(preimport.SKIP_ENV, None)  # the step's code sees the runner's environment
        try:
            path, state = str(request["spec"]), str(request["state"])
            run_id, params = str(request["run_id"]), str(request.get("params") or "{}")
            # as ``python -m jup2kub_runtime.step_run`` has it
            sys.argv = [step_run.__file__ or "", "--spec", path, "--state", state]
            sys.argv += ["--run-id", run_id, "--params", params]
            echo = bool(request.get("echo"))  # the cells' output also on stdout/stderr
            code = execute_once(self.specs.get(path) or path, state, run_id, params, echo=echo)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        _as_at_exit()
        return code

    def _reap(self, *, block: bool) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            ident = self.children.pop(pid, None)
            if ident is not None:
                code = os.waitstatus_to_exitcode(status)
                self._emit({"event": "exited", "id": ident, "pid": pid, "code": code})

    def _emit(self, event: dict[str, Any]) -> None:
        if self.broken:
            return
        try:
            os.write(self.events, (json.dumps(event) + "\n").encode())
        except OSError:  # the runner is gone: nobody to serve
            self.broken = True

    def _stop(self) -> None:
        """End of input: kill the children still running, reap and report them."""
        for pid in list(self.children):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self._reap(block=True)


def _redirect(fd: int, path: str) -> None:
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(target, fd)
    os.close(target)


def _reseed_numpy() -> None:
    """NumPy's legacy global generator was seeded once in the server: without a new seed
    every step would draw the same "random" numbers (Python's ``random`` is reseeded at fork
    by the standard library; a carried random state is restored later and wins)."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        with contextlib.suppress(Exception):
            numpy_random.seed()


def _as_at_exit() -> None:
    """What a process's normal end does before ``os._exit``: wait for the non-daemon threads,
    run the exit handlers (the step's: the server's own were cleared), flush."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            with contextlib.suppress(Exception):
                thread.join()
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _load(paths: list[str]) -> dict[str, StepSpec]:
    """The specs that load; a broken one is reported by its step's own execution."""
    specs: dict[str, StepSpec] = {}
    for path in paths:
        with contextlib.suppress(StepRuntimeError, OSError, ValueError):
            specs[path] = StepSpec.load(path)
    return specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {FORK_SERVER_MODULE}", description="Fork each step from a warm process."
    )
    parser.add_argument("--parent", type=int, required=True, help="die when this process ends")
    parser.add_argument("--spec", action="append", default=[], help="step.json to warm up for")
    parser.add_argument("--local", action="append", default=[], help="the notebook's directory")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    specs = _load(args.spec)
    preimport.warm(specs.values(), [Path(d) for d in args.local])
    for spec in specs.values():
        preimport.warm_up(spec, imports=False)
    _settle_for_forking()
    return Server(specs).serve()


def _settle_for_forking() -> None:
    """What would make every child slow, undone once: the exit handlers the imports
    registered (IPython's runs a full garbage collection, touching, so copying, every page),
    and the garbage collector's walks over the server's objects (frozen: never collected)."""
    atexit._clear()  # a child runs only the handlers its step's code registers
    gc.collect()
    gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
