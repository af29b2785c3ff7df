"""The options several commands share, spelled once (the IPython magics parse with them too)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from jup2kub import api

F = TypeVar("F", bound=Callable[..., Any])


split_option = click.option(
    "--split",
    type=click.Choice(api.SPLIT_MODES),
    default="auto",
    show_default=True,
    help="How to cut the notebook into steps: Kale cell tags, '#| step:' markers, markdown "
    "headings, one step per code cell, or auto (the first of those the notebook uses).",
)


name_option = click.option(
    "--name",
    default=None,
    help="The pipeline's name, as given to `jup2kub build --name` [default: from the notebook "
    "file]. Topics, images and the work directory are named after it.",
)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def kafka_timeout_option(default: str) -> Callable[[F], F]:
    """--kafka-timeout: how long a broker that does not answer is waited for (it may be
    restarting), then an error naming its address."""
    return click.option(
        "--kafka-timeout",
        metavar="DURATION",
        default=default,
        show_default=True,
        help="How long to wait for a Kafka broker that does not answer (e.g. 90s, 5m), then "
        "an error naming its address.",
    )


def parameter_options(func: F) -> F:
    """-p NAME VALUE, -y YAML and -f FILE (each repeatable), as papermill spells them."""
    func = click.option(
        "-y",
        "--parameters-yaml",
        "yaml_texts",
        multiple=True,
        metavar="YAML",
        help="Parameters as inline YAML, e.g. -y 'n: 3' or -y '{n: 3, label: x}' (applied "
        "after -f, before -p).",
    )(func)
    func = click.option(
        "-f",
        "--parameters-file",
        "files",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="YAML file of parameters (applied before -p).",
    )(func)
    return click.option(
        "-p",
        "--parameters",
        "pairs",
        nargs=2,
        multiple=True,
        metavar="NAME VALUE",
        help="Set a parameter (type inferred as papermill does: int, float, True/False/None, "
        "str; a string where the notebook's value is one). It must have the type of the "
        "parameters cell's value.",
    )(func)


catalog_option = click.option(
    "--catalog",
    default=None,
    metavar="URL",
    help="The step catalog: a SQLite file path or postgresql://USER@HOST:PORT/DB [default: "
    "$JUP2KUB_CATALOG, else $XDG_DATA_HOME/jup2kub/catalog.db].",
)


def kube_options(func: F) -> F:
    """--namespace/--kubeconfig/--context, as helm and kubectl spell them."""
    func = click.option(
        "--context",
        "context",
        default=None,
        metavar="NAME",
        help="Kube context [default: the current one].",
    )(func)
    func = click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="Kubeconfig file [default: $KUBECONFIG or ~/.kube/config].",
    )(func)
    func = click.option(
        "-n", "--namespace", default=None, help="Namespace [default: the context's]."
    )(func)
    return func


def kube_target(
    namespace: str | None, kubeconfig: Path | None, context: str | None
) -> api.KubeTarget:
    """The cluster that ``kube_options`` name."""
    return api.KubeTarget(kubeconfig, context, namespace)


def key_options(*, public: bool, required: bool = True) -> Callable[[F], F]:
    """--key (cosign) and --keyring (OpenPGP, for Helm's provenance files): a private pair to
    sign with, or a public pair to verify with; the keyring defaults to the one beside the key
    that `jup2kub keygen` made."""
    kind, ring = ("public", "PREFIX.pubring.gpg") if public else ("private", "PREFIX.secring.gpg")
    ending = ".pub" if public else ".key"

    def add(func: F) -> F:
        func = click.option(
            "--keyring",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            default=None,
            help=f"OpenPGP {'public' if public else 'secret'} keyring for the chart's provenance "
            f"file [default: {ring} beside the key].",
        )(func)
        func = click.option(
            "--key",
            required=required,
            default=None,
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            help=f"The cosign {kind} key (PREFIX{ending} of `jup2kub keygen`).",
        )(func)
        return func

    return add
