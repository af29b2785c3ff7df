"""A run as a Provenance Run Crate (https://w3id.org/ro/wfrun/provenance/0.5, which is also a
Workflow Run Crate and a Process Run Crate): the notebook is the workflow (mainEntity), each
step a tool with a HowToStep, the run a CreateAction the engine's OrganizeAction resulted in,
and each step's execution a CreateAction a ControlAction points at. Built with ro-crate-py
(``rocrate``); only the metadata file is written here, atomically, next to the files it lists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jup2kub.files import atomic_write_text
from jup2kub.provenance.facts import COMPLETED, FAILED, OutputFile, RunFacts, StepFacts
from jup2kub.version import __version__

if TYPE_CHECKING:  # ro-crate-py takes 0.2-0.4 s to import: loaded when a crate is written
    from rocrate.rocrate import ROCrate

#: schema.org's status of an action that did not happen (a step that never ran)
POTENTIAL = "PotentialActionStatus"
#: the file every RO-Crate is described by, at its root
METADATA = "ro-crate-metadata.json"
#: RO-Crate 1.1: the version the Workflow Run Crate profiles 0.5 are written against
RO_CRATE_VERSION = "1.1"
#: the workflow-run terms (containerImage, sha256, ...) on top of RO-Crate's context
WFRUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": "Process Run Crate",
    "https://w3id.org/ro/wfrun/workflow/0.5": "Workflow Run Crate",
    "https://w3id.org/ro/wfrun/provenance/0.5": "Provenance Run Crate",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": "Workflow RO-Crate",
}
#: the crate's metadata is CC0, as RO-Crate's own context; the run's files keep their terms
LICENSE = "https://creativecommons.org/publicdomain/zero/1.0/"
ENGINE_ID = "#jup2kub"
NOTEBOOK_LANGUAGE: dict[str, Any] = {
    "@id": "#jupyter-notebook",
    "@type": "ComputerLanguage",
    "name": "Jupyter Notebook (Python)",
    "alternateName": "ipynb",
    "url": {"@id": "https://jupyter.org"},
    "identifier": {"@id": "https://jupyter.org"},
}


def write_crate(root: Path, facts: RunFacts, notebook: OutputFile) -> Path:
    """Describe run ``facts`` in ``root/ro-crate-metadata.json`` (atomically: a reader sees
    the previous crate or this one); ``notebook`` is the workflow's copy in ``root``."""
    path = Path(root) / METADATA
    atomic_write_text(path, json.dumps(crate_json(facts, notebook), indent=2) + "\n")
    return path


def crate_json(facts: RunFacts, notebook: OutputFile) -> dict[str, Any]:
    """The crate's JSON-LD document."""
    from rocrate.rocrate import ROCrate

    crate = ROCrate(version=RO_CRATE_VERSION)
    crate.metadata.extra_contexts.append(WFRUN_CONTEXT)
    _root(crate, facts)
    workflow = _workflow(crate, facts, notebook)
    engine = _entity(crate, ENGINE_ID, properties=_engine())
    run = _run_action(crate, facts, workflow)
    controls = [_step_actions(crate, facts, step) for step in facts.steps]
    _entity(
        crate,
        f"#organize-{facts.run_id}",
        properties={
            "@type": "OrganizeAction",
            "name": f"Jup2Kub orchestrating run {facts.run_id}",
            "instrument": {"@id": engine.id},
            "result": {"@id": run.id},
            "object": [{"@id": c} for c in controls],
            "startTime": _iso(facts.start),
            "endTime": _iso(facts.end),
            "actionStatus": {"@id": f"http://schema.org/{facts.status}"},
        },
    )
    doc: dict[str, Any] = crate.metadata.generate()
    return doc


def _entity(crate: ROCrate, ident: str, properties: Mapping[str, Any]) -> Any:
    """A contextual entity of the crate (an action, a parameter, a profile...)."""
    from rocrate.model.contextentity import ContextEntity

    return crate.add(ContextEntity(crate, ident, properties=dict(properties)))


def _root(crate: ROCrate, facts: RunFacts) -> None:
    root = crate.root_dataset
    root["name"] = f"Run {facts.run_id} of pipeline {facts.pipeline}"
    root["description"] = (
        f"Provenance of run {facts.run_id} of the notebook {facts.notebook_name} as a "
        f"Jup2Kub pipeline ({_status_word(facts.status)})"
    )
    root["datePublished"] = _iso(facts.end)
    root["license"] = {"@id": LICENSE}
    _entity(crate, LICENSE, properties={"@type": "CreativeWork", "name": "CC0"})
    for uri, name in PROFILES.items():
        _entity(crate, uri, properties={"@type": "CreativeWork", "name": name})
        root.append_to("conformsTo", {"@id": uri})
    root["mentions"] = {"@id": _run_id(facts)}


def _workflow(crate: ROCrate, facts: RunFacts, notebook: OutputFile) -> Any:
    """The notebook as the ComputationalWorkflow, its steps as tools and HowToSteps, its
    parameters as FormalParameters."""
    language = _entity(crate, NOTEBOOK_LANGUAGE["@id"], NOTEBOOK_LANGUAGE)
    workflow = crate.add_file(
        dest_path=notebook.path,
        properties={
            "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
            "name": facts.notebook_name,
            "programmingLanguage": {"@id": language.id},
            "encodingFormat": "application/x-ipynb+json",
            "sha256": notebook.sha256,
            "contentSize": str(notebook.size),
        },
    )
    crate.mainEntity = workflow
    if facts.source is not None:
        _source(crate, workflow, facts.source)
    crate.metadata.append_to(
        "conformsTo", {"@id": "https://w3id.org/workflowhub/workflow-ro-crate/1.0"}
    )
    inputs = [_formal_parameter(crate, facts, name) for name in _parameter_names(facts)]
    if inputs:
        workflow["input"] = [{"@id": p} for p in inputs]
    for step in facts.steps:
        tool = _entity(crate, _tool_id(step), properties=_tool(facts, step))
        howto = _entity(
            crate,
            f"#howto-{step.name}",
            properties={
                "@type": "HowToStep",
                "name": step.name,
                "position": str(step.position),
                "workExample": {"@id": tool.id},
            },
        )
        workflow.append_to("hasPart", {"@id": tool.id})
        workflow.append_to("step", {"@id": howto.id})
    return workflow


def _source(crate: ROCrate, workflow: Any, source: OutputFile) -> None:
    """The notebook file that ran, by hash: the crate's copy has its secrets left out."""
    entity = _entity(
        crate,
        "#source-notebook",
        properties={
            "@type": "CreativeWork",
            "name": source.name,
            "description": f"The notebook file as it ran ({source.path}); the crate's copy "
            "replaces the literals of its secret parameters with None",
            "sha256": source.sha256,
            "contentSize": str(source.size),
            "encodingFormat": "application/x-ipynb+json",
        },
    )
    workflow["isBasedOn"] = {"@id": entity.id}


def _parameter_names(facts: RunFacts) -> list[str]:
    return list(dict.fromkeys([*facts.parameters, *facts.secrets]))


def _formal_parameter(crate: ROCrate, facts: RunFacts, name: str) -> str:
    """The parameter's slot; a secret's says where its value came from, never the value."""
    secret = facts.secrets.get(name)
    value = facts.parameters.get(name)
    props: dict[str, Any] = {
        "@type": "FormalParameter",
        "name": name,
        "additionalType": "Text" if secret is not None else _additional_type(value),
        "valueRequired": False,
        "conformsTo": {"@id": "https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE"},
    }
    if secret is not None:
        props["description"] = (
            f"A secret parameter: its value came from the environment variable {secret} (or "
            "the notebook) and is not recorded"
        )
    entity = _entity(crate, f"#param-{name}", properties=props)
    return str(entity.id)


def _additional_type(value: Any) -> str:
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "Text"
    return "DataStructure"


def _tool(facts: RunFacts, step: StepFacts) -> dict[str, Any]:
    props: dict[str, Any] = {
        "@type": "SoftwareApplication",
        "name": f"step {step.name}",
        "description": f"The cells of step {step.name!r} of {facts.notebook_name}",
    }
    requirements: list[str | dict[str, str]] = []
    if facts.python:
        requirements.append(f"Python {facts.python}")
    if facts.environment is not None and step.image is None:
        requirements.append({"@id": facts.environment.path})
    if requirements:
        props["softwareRequirements"] = requirements
    return props


def _engine() -> dict[str, Any]:
    return {
        "@type": "SoftwareApplication",
        "name": "Jup2Kub",
        "version": __version__,
        "softwareVersion": __version__,
        "description": "Turns a Jupyter notebook into a pipeline of steps (locally, or on "
        "Kafka and Kubernetes) and records each run",
    }


def _run_action(crate: ROCrate, facts: RunFacts, workflow: Any) -> Any:
    """The run: the workflow's execution, with its parameters' values and its results."""
    values = [
        _entity(
            crate,
            f"#pv-{name}",
            properties={
                "@type": "PropertyValue",
                "name": name,
                "value": _literal(facts.parameters[name]),
                "exampleOfWork": {"@id": f"#param-{name}"},
            },
        )
        for name in facts.parameters
    ]
    results = [_file(crate, f) for f in facts.outputs]
    if facts.environment is not None:
        _file(crate, facts.environment)
    props: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"Run {facts.run_id} of {facts.notebook_name}",
        "identifier": facts.run_id,
        "startTime": _iso(facts.start),
        "endTime": _iso(facts.end),
        "actionStatus": {"@id": f"http://schema.org/{facts.status}"},
        "agent": {"@id": ENGINE_ID},
    }
    if facts.error:
        props["error"] = facts.error
    return crate.add_action(
        workflow,
        identifier=_run_id(facts),
        object=[{"@id": v.id} for v in values] or None,
        result=[{"@id": r} for r in results] or None,
        properties=props,
    )


def _step_actions(crate: ROCrate, facts: RunFacts, step: StepFacts) -> str:
    """The step's execution (a CreateAction of its tool) and the ControlAction the engine
    took for it. A step that did not run (an upstream failed, or the run stopped first) gets a
    potential action only: no times, no results."""
    status = step.status or POTENTIAL
    props: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"Run {facts.run_id}, step {step.name}",
        "actionStatus": {"@id": f"http://schema.org/{status}"},
    }
    if step.status is None:
        props["description"] = "Not run: an upstream step failed, or the run ended first"
    if step.start is not None and step.end is not None:
        props["startTime"], props["endTime"] = _iso(step.start), _iso(step.end)
    if step.error:
        props["error"] = step.error
    if step.reused:
        props["description"] = "Not executed in this run: an earlier execution's result reused"
    if step.image is not None:
        props["containerImage"] = {"@id": _image(crate, step)}
    results = [{"@id": _file(crate, f)} for f in step.outputs]
    action = crate.add_action(
        {"@id": _tool_id(step)},
        identifier=f"{_run_id(facts)}/{step.name}",
        result=results or None,
        properties=props,
    )
    control = _entity(
        crate,
        f"#control-{facts.run_id}/{step.name}",
        properties={
            "@type": "ControlAction",
            "name": f"orchestrate step {step.name}",
            "instrument": {"@id": f"#howto-{step.name}"},
            "object": {"@id": action.id},
            "actionStatus": {"@id": f"http://schema.org/{status}"},
        },
    )
    return str(control.id)


def _image(crate: ROCrate, step: StepFacts) -> str:
    assert step.image is not None
    repository, _, tag = step.image.reference.rpartition(":")
    if "/" in tag or not repository:  # a registry port, no tag
        repository, tag = step.image.reference, ""
    registry, _, name = repository.partition("/") if "/" in repository else ("", "", repository)
    props: dict[str, Any] = {
        "@type": "ContainerImage",
        "additionalType": {"@id": "https://w3id.org/ro/terms/workflow-run#DockerImage"},
        "name": name,
    }
    if registry:
        props["registry"] = registry
    if tag:
        props["tag"] = tag
    if step.image.digest:
        props["sha256"] = step.image.digest.removeprefix("sha256:")
    entity = _entity(crate, f"#image-{step.name}", properties=props)
    return str(entity.id)


def _file(crate: ROCrate, f: OutputFile) -> str:
    """A file of the crate (listed once however many actions name it)."""
    existing = crate.get(f.path)
    if existing is not None:
        return str(existing.id)
    entity = crate.add_file(
        dest_path=f.path,
        properties={
            "name": f.name,
            "sha256": f.sha256,
            "contentSize": str(f.size),
            "encodingFormat": f.media_type,
        },
    )
    return str(entity.id)


def _tool_id(step: StepFacts) -> str:
    return f"#step-{step.name}"


def _run_id(facts: RunFacts) -> str:
    return f"#{facts.run_id}"


def _literal(value: Any) -> Any:
    """A parameter's value as JSON-LD takes it: scalars as they are, anything else as JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return "None" if value is None else value
    return json.dumps(value, default=str, sort_keys=True)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _status_word(status: str) -> str:
    return {COMPLETED: "completed", FAILED: "failed"}.get(status, status)


def describe(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The crate's entities by ``@id`` (for readers and tests)."""
    return {e["@id"]: e for e in doc.get("@graph", [])}
