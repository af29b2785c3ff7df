"""The JSON messages on the pipeline's topics, and their validation on receipt.

Every message has ``"version": 1`` and a ``"type"``. Values never travel in messages (only run
ids, step names and JSON parameters) and nothing from a message is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from .errors import ErrorRecord, MessageError, PermanentError
from .states import STATUS_STATES, StepState
from .valid_names import IDENTIFIER_RE, NAME_RE, check_run_id

MESSAGE_VERSION = 1
MESSAGE_TYPES = ("run", "step-done", "status", "dead-letter")
MAX_PARAMETERS = 256
ORIGINAL_EXCERPT_BYTES = 4096  # how much of a bad message the dead-letter keeps


def now_iso() -> str:
    """UTC timestamp with microseconds, e.g. 2025-01-01T12:00:00.123456+00:00."""
    return datetime.now(timezone.utc).isoformat()


def parse_time(value: str) -> float:
    """Epoch seconds of a timestamp written by ``now_iso``."""
    return datetime.fromisoformat(value).timestamp()


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()


def run_message(
    run_id: str, parameters: dict[str, Any] | None = None, submitted_at: str | None = None
) -> dict[str, Any]:
    """What ``jup2kub submit`` sends to ``<pipeline>.runs``."""
    check_run_id(run_id)
    return {
        "version": MESSAGE_VERSION,
        "type": "run",
        "run_id": run_id,
        "parameters": dict(parameters or {}),
        "submitted_at": submitted_at or now_iso(),
    }


def step_done_message(run_id: str, step: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": MESSAGE_VERSION,
        "type": "step-done",
        "run_id": run_id,
        "step": step,
        "parameters": parameters,
    }


def status_message(
    run_id: str, step: str, state: StepState, attempt: int, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    state = StepState(state)
    assert state in STATUS_STATES
    msg: dict[str, Any] = {
        "version": MESSAGE_VERSION,
        "type": "status",
        "run_id": run_id,
        "step": step,
        "state": state.value,
        "attempt": attempt,
        "at": now_iso(),
    }
    if error is not None:
        msg["error"] = error
    return msg


def dead_letter_message(
    reason: str,
    step: str,
    original: bytes | None,
    *,
    run_id: str | None = None,
    error: ErrorRecord | None = None,
) -> dict[str, Any]:
    """A message the step gave up on. ``original`` is kept as text (an excerpt if large)."""
    raw = original or b""
    msg: dict[str, Any] = {
        "version": MESSAGE_VERSION,
        "type": "dead-letter",
        "reason": reason,
        "step": step,
        "original": raw[:ORIGINAL_EXCERPT_BYTES].decode("utf-8", errors="replace"),
        "original_bytes": len(raw),
        "at": now_iso(),
    }
    if run_id is not None:
        msg["run_id"] = run_id
    if error is not None:
        msg["error"] = error.to_message()
    return msg


@dataclass(frozen=True)
class Incoming:
    """A validated run or step-done message."""

    type: Literal["run", "step-done"]
    run_id: str
    parameters: dict[str, Any] = field(default_factory=dict)
    step: str | None = None  # the upstream step, for step-done
    submitted_at: str | None = None


def parse(raw: bytes | None, *, max_bytes: int) -> Incoming:
    """Validate a consumed message; MessageError (dead-letter) says what is wrong with it."""
    if raw is None:
        raise MessageError("empty message (null value)")
    if len(raw) > max_bytes:
        raise MessageError(f"oversized message: {len(raw)} bytes > limit {max_bytes}")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MessageError(f"not UTF-8 JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MessageError(f"not a JSON object but {type(data).__name__}")
    version = data.get("version")
    if version != MESSAGE_VERSION or isinstance(version, bool):
        raise MessageError(f"unsupported message version {version!r} (expected {MESSAGE_VERSION})")
    kind = data.get("type")
    if kind not in ("run", "step-done"):
        raise MessageError(f"unexpected message type {kind!r} (expected 'run' or 'step-done')")
    try:
        run_id = check_run_id(data.get("run_id"))
    except PermanentError as exc:
        raise MessageError(str(exc)) from exc
    parameters = data.get("parameters", {})
    if not isinstance(parameters, dict):
        raise MessageError("'parameters' must be a JSON object")
    if len(parameters) > MAX_PARAMETERS:
        raise MessageError(f"too many parameters ({len(parameters)} > {MAX_PARAMETERS})")
    for name in parameters:
        if not IDENTIFIER_RE.match(name):
            raise MessageError(f"parameter name {name!r} is not a Python identifier")
    if kind == "run":
        submitted = data.get("submitted_at")
        if submitted is not None and not isinstance(submitted, str):
            raise MessageError("'submitted_at' must be a string")
        return Incoming("run", run_id, parameters, None, submitted)
    step = data.get("step")
    if not isinstance(step, str) or not NAME_RE.match(step):
        raise MessageError(f"step-done message names an invalid step {step!r}")
    return Incoming("step-done", run_id, parameters, step)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
