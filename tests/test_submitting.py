"""Submitting many runs against a real broker: the library's submit from many threads shares
one producer (and one read of the notebook), `jup2kub submit --params-file` sends a file of
parameter sets with one producer, each run arriving exactly once with its parameters."""

from __future__ import annotations

import json
import os
import threading
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jup2kub import api
from jup2kub.run import remote
from jup2kub_runtime.contract.topics import runs_topic
from tests.support.cli_runner import jup2kub

MakeNb = Callable[..., Path]

CELLS = [
    ("code", 'n = 3\nlabel = "a"\napi_key = "sk-test-key-123"', ["parameters"]),
    "#| step: make\nvalues = [i * i for i in range(n)]",
    "#| step: total\nprint(label, sum(values), len(api_key))",
]


@pytest.fixture
def notebook(kafka: str, make_notebook: MakeNb) -> tuple[Path, str]:
    """A notebook with parameters, and its pipeline's runs topic (created, as a deployed
    pipeline has it: the broker creates no topic by itself)."""
    from kafka.admin import KafkaAdminClient, NewTopic

    nb = make_notebook(CELLS, name=f"nb-{uuid.uuid4().hex[:8]}.ipynb")  # a topic of its own
    topic = runs_topic(api.inspect_notebook(nb).name)
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        admin.close()
    return nb, topic


def _runs(kafka: str, topic: str) -> list[dict[str, Any]]:
    """Every run message on ``topic`` (all partitions, from the beginning), checked to be keyed
    by its run id (what the runtime's effectively-once handling keys on)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        found: list[dict[str, Any]] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    message = json.loads(record.value)
                    assert record.key == message["run_id"].encode()
                    found.append(message)
        return found
    finally:
        consumer.close()


def test_threads_share_one_producer_and_every_run_arrives_once(
    kafka: str, notebook: tuple[Path, str]
) -> None:
    nb, topic = notebook
    remote.PRODUCERS.close_all()  # this test's broker's producer: none yet
    made, reads = remote.PRODUCERS.made, api._SUBMITTED.reads
    sent: dict[str, int] = {}
    lock = threading.Lock()

    def submit(thread: int) -> None:
        for i in range(25):
            n = thread * 100 + i
            run_id = api.submit(nb, kafka, {"n": n}, kafka_timeout=60)
            with lock:
                sent[run_id] = n

    threads = [threading.Thread(target=submit, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent) == 200  # 200 distinct run ids, every submit returned one
    assert remote.PRODUCERS.made - made == 1  # one producer, shared by the 8 threads
    assert api._SUBMITTED.reads - reads <= 8  # the notebook read once (a few threads racing)
    messages = _runs(kafka, topic)
    counts = Counter(m["run_id"] for m in messages)
    assert set(counts) == set(sent) and set(counts.values()) == {1}  # each exactly once
    for message in messages:
        assert message["type"] == "run"
        assert message["parameters"] == {"n": sent[message["run_id"]]}


def test_params_file_sends_one_run_per_line_in_order(
    kafka: str, notebook: tuple[Path, str], tmp_path: Path
) -> None:
    nb, topic = notebook
    lines = [
        json.dumps({"n": i}) if i % 3 else json.dumps({"n": i, "label": "x"}) for i in range(30)
    ]
    runs = tmp_path / "runs.jsonl"
    runs.write_text("\n".join(lines[:10]) + "\n\n   \n" + "\n".join(lines[10:]) + "\n")
    proc = jup2kub(
        "submit", nb, "--kafka", kafka, "--params-file", runs, "-p", "label", "dflt", "-y", "n: 7"
    )
    assert proc.returncode == 0, proc.stderr
    ids = proc.stdout.split()
    assert len(ids) == 30 and len(set(ids)) == 30
    by_id = {m["run_id"]: m for m in _runs(kafka, topic)}
    for i, run_id in enumerate(ids):  # in the file's order, each line's values over -p/-y
        assert by_id[run_id]["parameters"] == {"n": i, "label": "x" if i % 3 == 0 else "dflt"}


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"n": 1', "runs.jsonl:3: not valid JSON"),
        ("[1, 2]", "runs.jsonl:3: a line must be a JSON object"),
        ('{"nn": 1}', "runs.jsonl:3: unknown parameter: nn"),
        ('{"n": "many"}', "runs.jsonl:3:"),
        ('{"api_key": "sk-other"}', "runs.jsonl:3: parameter 'api_key' is a secret"),
    ],
)
def test_a_bad_params_file_line_is_named_and_nothing_is_sent(
    kafka: str, notebook: tuple[Path, str], tmp_path: Path, line: str, says: str
) -> None:
    nb, topic = notebook
    runs = tmp_path / "runs.jsonl"
    runs.write_text('{"n": 1}\n\n' + line + '\n{"n": 2}\n')
    before = len(_runs(kafka, topic))
    proc = jup2kub("submit", nb, "--kafka", kafka, "--params-file", runs)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert len(_runs(kafka, topic)) == before  # not even the good first line


def test_run_id_with_params_file_is_a_usage_error(
    kafka: str, notebook: tuple[Path, str], tmp_path: Path
) -> None:
    nb, _ = notebook
    runs = tmp_path / "runs.jsonl"
    runs.write_text('{"n": 1}\n')
    proc = jup2kub("submit", nb, "--kafka", kafka, "--params-file", runs, "--run-id", "r1")
    assert proc.returncode == 2 and "--run-id" in proc.stderr, proc.stderr


def test_a_forked_child_makes_its_own_producer(kafka: str, notebook: tuple[Path, str]) -> None:
    nb, topic = notebook
    parent_run = api.submit(nb, kafka, {"n": 1})
    assert remote.PRODUCERS.made >= 1
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # forking a threaded process
        pid = os.fork()
    if pid == 0:  # the child: reports its producer count and its run id, then leaves at once
        os.close(read)
        code = 1
        try:
            made = remote.PRODUCERS.made
            run_id = api.submit(nb, kafka, {"n": 2}, kafka_timeout=60)
            os.write(write, json.dumps([made, remote.PRODUCERS.made, run_id]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    before, after, child_run = json.loads(report)
    assert (before, after) == (0, 1)  # none inherited: it made its own
    params = {m["run_id"]: m["parameters"] for m in _runs(kafka, topic)}
    assert params[parent_run] == {"n": 1} and params[child_run] == {"n": 2}
    assert api.submit(nb, kafka, {"n": 3}) in {m["run_id"] for m in _runs(kafka, topic)}


def test_a_changed_notebook_is_read_again(kafka: str, notebook: tuple[Path, str]) -> None:
    nb, _ = notebook
    api.submit(nb, kafka, {"n": 1})
    reads = api._SUBMITTED.reads
    api.submit(nb, kafka, {"n": 2})
    assert api._SUBMITTED.reads == reads  # unchanged: not read again
    text = nb.read_text().replace('label = \\"a\\"', 'label = \\"a\\"\\nextra = 1')
    assert "extra" in text
    nb.write_text(text)
    api.submit(nb, kafka, {"extra": 5})  # a parameter only the new version has
    assert api._SUBMITTED.reads == reads + 1


def test_a_producer_closed_under_a_submit_is_replaced(
    kafka: str, notebook: tuple[Path, str]
) -> None:
    """The shared producer closed (as another thread's failed send closes it): the next submit
    makes a new one and its run arrives."""
    nb, topic = notebook
    api.submit(nb, kafka, {"n": 1})
    made = remote.PRODUCERS.made
    (broken,) = remote.PRODUCERS._producers.values()
    broken.close(timeout=5)
    run_id = api.submit(nb, kafka, {"n": 2}, kafka_timeout=60)
    assert remote.PRODUCERS.made == made + 1
    assert remote.PRODUCERS._producers[(kafka, 30)] is not broken
    assert {"run_id": run_id, "n": 2} in [
        {"run_id": m["run_id"], **m["parameters"]} for m in _runs(kafka, topic)
    ]
