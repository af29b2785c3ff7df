"""Signatures: ``jup2kub keygen``, ``sign`` and ``verify`` (and the check ``deploy --verify``
makes), against the real CNCF distribution registry, the real cosign, helm and gpg.

The step images here are tiny OCI images pushed with oras (an image config and one layer):
what is signed is a manifest digest, whatever built the image, so no Docker build is needed.
The chart is a real `jup2kub build --no-images` chart whose values name those images by digest,
as `build --push` would."""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from jup2kub import api
from jup2kub.errors import SignatureError
from jup2kub.oci.charts import pull_chart
from jup2kub.oci.published import RECORD, record
from jup2kub.oci.references import Reference
from jup2kub.oci.signing import verify_chart
from tests.support.cli_runner import CORPUS, jup2kub
from tests.support.prometheus_server import free_port
from tests.support.registry import Registry, running_registry, tool

NOTEBOOK = CORPUS / "plain_cells.ipynb"  # five steps
PASSWORD = "correct horse battery staple"
#: which pushed image each step runs: steps share images, as build does when packages agree
Done = subprocess.CompletedProcess[str]
STEP_IMAGES = {
    "cell-0": "one",
    "cell-1": "one",
    "cell-2": "two",
    "cell-3": "two",
    "cell-4": "three",
}


def _env(password: str | None = PASSWORD, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COSIGN_PASSWORD"}
    if password is not None:
        env["COSIGN_PASSWORD"] = password
    return {**env, **extra}


def _run(*args: str | Path, password: str | None = PASSWORD, **extra: str) -> Done:
    return jup2kub(*args, env=_env(password, **extra))


def _ok(done: Done) -> Done:
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _refused(done: Done, *needles: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr
    return str(done.stderr)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tool("J2K_COSIGN")
    tool("J2K_ORAS")
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


def push_image(
    registry: str, repository: str, content: str, work: Path, env: dict[str, str] | None = None
) -> str:
    """A tiny OCI image (image config + one layer) pushed with oras; its manifest digest."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.json"
    config.write_text(
        json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}})
    )
    (work / "layer").write_text(content)
    done = subprocess.run(
        [
            tool("J2K_ORAS"),
            *("push", "--plain-http", "--format", "json"),
            *("--config", f"{config.name}:application/vnd.oci.image.config.v1+json"),
            f"{registry}/{repository}:1",
            "layer:application/vnd.oci.image.layer.v1.tar",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=work,
        env={**os.environ, **(env or {})},
    )
    return str(json.loads(done.stdout)["digest"])


def point_at(chart: Path, registry: str, images: dict[str, tuple[str, str]]) -> None:
    """Make the chart's values name ``images`` (step -> repository, digest) in ``registry``,
    as `build --image-registry REGISTRY --push` writes them."""
    path = chart / "values.yaml"
    values = yaml.safe_load(path.read_text())
    values["image"]["registry"] = registry
    for step, (repository, digest) in images.items():
        values["steps"][step]["image"].update(repository=repository, digest=digest)
    path.write_text(yaml.safe_dump(values, sort_keys=False))


@pytest.fixture(scope="module")
def digests(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    work = tmp_path_factory.mktemp("images")
    return {
        name: push_image(registry.host, f"j2k/{name}", f"image {name}", work / name)
        for name in sorted(set(STEP_IMAGES.values()))
    }


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("keys") / "team"
    _ok(_run("keygen", prefix))
    return prefix


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("other-keys") / "other"
    _ok(_run("keygen", prefix, password="another password"))
    return prefix


def _build_chart(out: Path) -> Path:
    _ok(_run("build", NOTEBOOK, "-o", out, "--no-images", "--name", "sigdemo"))
    return out


@pytest.fixture(scope="module")
def unsigned_chart(
    registry: Registry, digests: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A chart naming the pushed images by digest (copied by the tests that change it)."""
    out = _build_chart(tmp_path_factory.mktemp("chart") / "out")
    point_at(out, f"{registry.host}/j2k", {s: (n, digests[n]) for s, n in STEP_IMAGES.items()})
    return out


@pytest.fixture(scope="module")
def signed(
    registry: Registry, unsigned_chart: Path, keys: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Done]:
    """The chart signed and pushed: (its directory, what `sign` said)."""
    chart = tmp_path_factory.mktemp("signed") / "out"
    shutil.copytree(unsigned_chart, chart)
    dist = chart.parent / "dist"
    done = _ok(
        _run(
            "sign",
            chart,
            "--key",
            f"{keys}.key",
            "-d",
            dist,
            "--oci",
            f"oci://{registry.host}/charts",
        )
    )
    return chart, done


def _record(chart: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((chart / RECORD).read_text())
    return loaded


def test_keygen_makes_both_key_pairs_and_never_overwrites(keys: Path) -> None:
    for suffix, mode in [(".key", 0o600), (".secring.gpg", 0o600), (".pub", 0o644)]:
        path = Path(f"{keys}{suffix}")
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert Path(f"{keys}.pubring.gpg").stat().st_size > 0
    assert "-----BEGIN PUBLIC KEY-----" in Path(f"{keys}.pub").read_text()
    assert "ENCRYPTED" in Path(f"{keys}.key").read_text()
    before = {p.name: p.read_bytes() for p in keys.parent.iterdir()}
    _refused(_run("keygen", keys), "refusing to overwrite", f"{keys}.key")
    assert {p.name: p.read_bytes() for p in keys.parent.iterdir()} == before
    # no password in the environment and no terminal to ask on: a usage error, no files
    _refused(_run("keygen", keys.parent / "nopw", password=None), "COSIGN_PASSWORD")
    assert not list(keys.parent.glob("nopw*"))
    # a PREFIX where no file can be written
    (keys.parent / "a-file").write_text("")
    _refused(_run("keygen", keys.parent / "a-file" / "k"), "cannot write the keys")
    # the OpenPGP pair is one helm reads: a secret key protected by the password, and its
    # public half (gpg lists one key, no user keyring touched)
    home = keys.parent / "gnupg"
    home.mkdir(mode=0o700)
    listing = subprocess.run(
        [
            "gpg",
            "--homedir",
            home,
            "--batch",
            "--with-colons",
            "--show-keys",
            f"{keys}.pubring.gpg",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "team (jup2kub chart signing)" in listing


def test_sign_then_verify(
    signed: tuple[Path, Done], keys: Path, registry: Registry, digests: dict[str, str]
) -> None:
    chart, done = signed
    # each image signed once, however many steps run it, and by digest
    for name, digest in digests.items():
        assert done.stdout.count(f"signed image {registry.host}/j2k/{name}@{digest}") == 1
    assert "(steps cell-0, cell-1)" in done.stdout and "(step cell-4)" in done.stdout
    tgz = chart.parent / "dist" / "sigdemo-0.1.0.tgz"
    assert Path(f"{tgz}.prov").is_file() and (tgz.parent / "index.yaml").is_file()
    chart_ref = _record(chart)["chart"]
    assert chart_ref.startswith(f"{registry.host}/charts/sigdemo:0.1.0@sha256:")
    assert f"pushed and signed chart oci://{chart_ref}" in done.stdout
    assert _record(chart)["tarball"] == str(tgz)
    # each image's signature is where cosign looks for it: a sha256-<digest>.sig tag
    for name, digest in digests.items():
        assert f"{digest.replace(':', '-')}.sig" in registry.tags(f"j2k/{name}")
    verified = _ok(_run("verify", chart, "--key", f"{keys}.pub", password=None))
    lines = verified.stdout.splitlines()
    assert sum(line.startswith("verified image ") for line in lines) == 3
    assert f"verified chart {tgz} (sigdemo-0.1.0.tgz.prov)" in lines
    assert f"verified chart oci://{chart_ref}" in lines
    assert lines[-1] == "all signatures hold"
    _refused(_run("verify", chart, "--key", f"{keys}.key"), "is not a public key")


def test_the_pushed_chart_is_verifiable_by_cosign_and_helm(
    signed: tuple[Path, Done], keys: Path, tmp_path: Path
) -> None:
    chart, _ = signed
    chart_ref = _record(chart)["chart"]
    name, _, digest = chart_ref.partition("@")
    cosign = subprocess.run(
        [
            tool("J2K_COSIGN"),
            *("verify", "--key", f"{keys}.pub", "--insecure-ignore-tlog=true"),
            f"{name.rsplit(':', 1)[0]}@{digest}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cosign.returncode == 0, cosign.stderr
    assert json.loads(cosign.stdout)[0]["critical"]["image"]["docker-manifest-digest"] == digest
    # helm carried the .prov along: helm pull --verify checks it with the public keyring
    pulled = subprocess.run(
        [
            os.environ.get("J2K_HELM", "helm"),
            *("pull", f"oci://{name.rsplit(':', 1)[0]}", "--version", "0.1.0", "--plain-http"),
            *("--verify", "--keyring", f"{keys}.pubring.gpg", "-d", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert "Chart Hash Verified" in pulled.stdout + pulled.stderr


def test_verify_with_another_key_names_every_artifact(
    signed: tuple[Path, Done], other_keys: Path, digests: dict[str, str]
) -> None:
    chart, _ = signed
    err = _refused(
        _run("verify", chart, "--key", f"{other_keys}.pub", password=None),
        "5 signature checks failed",
        f"not with the key {other_keys}.pub",
        "sigdemo-0.1.0.tgz.prov was signed with another key",
        f"chart oci://{_record(chart)['chart']}",
    )
    for digest in digests.values():
        assert f"@{digest}" in err


def test_an_unsigned_image_put_into_the_chart_is_named(
    signed: tuple[Path, Done],
    keys: Path,
    registry: Registry,
    digests: dict[str, str],
    tmp_path: Path,
) -> None:
    chart, _ = signed
    copy = tmp_path / "out"
    shutil.copytree(chart, copy)
    late = push_image(registry.host, "j2k/late", "pushed after signing", tmp_path / "late")
    point_at(copy, f"{registry.host}/j2k", {"cell-4": ("late", late)})
    err = _refused(
        _run("verify", copy, "--key", f"{keys}.pub", password=None),
        "2 signature checks failed",
        f"image {registry.host}/j2k/late@{late} (step cell-4): not signed",
        "OUT is not the chart that was signed",  # the signed package names another image
        "values.yaml differ",
    )
    assert digests["three"] not in err  # no longer named by the chart
    # signed again (its own package and place in the registry), all holds
    elsewhere = ("-d", tmp_path / "dist", "--oci", f"oci://{registry.host}/resigned")
    _ok(_run("sign", copy, "--key", f"{keys}.key", *elsewhere))
    _ok(_run("verify", copy, "--key", f"{keys}.pub", password=None))


def test_a_tampered_tarball_fails_its_provenance(
    signed: tuple[Path, Done], keys: Path, tmp_path: Path
) -> None:
    chart, _ = signed
    copy = tmp_path / "out"
    shutil.copytree(chart, copy)
    original = Path(_record(chart)["tarball"])
    tgz = tmp_path / "dist" / original.name
    tgz.parent.mkdir()
    shutil.copy(f"{original}.prov", f"{tgz}.prov")
    # the same chart with one value changed, packed under the same name
    unpacked = tmp_path / "unpacked"
    with tarfile.open(original) as tar:
        tar.extractall(unpacked, filter="data")
    values = unpacked / "sigdemo" / "values.yaml"
    values.write_text(values.read_text() + "\n# changed after signing\n")
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(unpacked / "sigdemo", arcname="sigdemo")
    record(copy, tgz, None)
    _refused(
        _run("verify", copy, "--key", f"{keys}.pub", password=None),
        "1 signature check failed",
        f"chart {tgz}: the tarball changed since it was signed",
    )


def test_a_wrong_password_signs_nothing(
    unsigned_chart: Path, keys: Path, registry: Registry, digests: dict[str, str], tmp_path: Path
) -> None:
    chart = tmp_path / "out"
    shutil.copytree(unsigned_chart, chart)
    _refused(
        _run("sign", chart, "--key", f"{keys}.key", "-d", tmp_path / "dist", password="wrong"),
        f"wrong password for {keys}.key",
    )
    assert not (tmp_path / "dist").exists() and not (chart / RECORD).exists()
    # a keyring with another password (here: another key pair's) is refused as clearly
    other = tmp_path / "mixed"
    _ok(_run("keygen", other, password="not the same"))
    _refused(
        _run(
            "sign",
            chart,
            *("--key", f"{keys}.key", "--keyring", f"{other}.secring.gpg"),
            *("-d", tmp_path / "dist"),
        ),
        f"wrong password for {other}.secring.gpg",
    )
    assert not list((tmp_path / "dist").glob("*.tgz*")) and not (chart / RECORD).exists()


def test_a_chart_without_digests_is_refused(keys: Path, tmp_path: Path) -> None:
    chart = _build_chart(tmp_path / "out")
    _refused(
        _run("sign", chart, "--key", f"{keys}.key", "-d", tmp_path / "dist"),
        "have no digest",
        "build with --push first",
        "cell-0, cell-1",
    )
    assert not (tmp_path / "dist").exists()


def test_a_registry_down_midway_says_what_was_signed(
    unsigned_chart: Path, keys: Path, registry: Registry, digests: dict[str, str], tmp_path: Path
) -> None:
    chart = tmp_path / "out"
    shutil.copytree(unsigned_chart, chart)
    down = f"127.0.0.1:{free_port()}"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    values["image"]["registry"] = ""
    live = f"{registry.host}/j2k/"
    for step, name in STEP_IMAGES.items():
        host = down if name == "three" else registry.host
        values["steps"][step]["image"].update(repository=f"{host}/j2k/{name}")
    (chart / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    err = _refused(
        _run("sign", chart, "--key", f"{keys}.key", "-d", tmp_path / "dist"),
        "the registry is unreachable",
        f"images signed: {live}one@{digests['one']}, {live}two@{digests['two']}",
        f"images NOT signed: {down}/j2k/three@{digests['three']}",
    )
    assert down in err
    # the chart package is signed and recorded (its step succeeded); nothing says "pushed"
    assert _record(chart)["chart"] is None
    # and verify names the image that is not signed
    _refused(
        _run("verify", chart, "--key", f"{keys}.pub", password=None), "the registry is unreachable"
    )


def test_the_password_never_reaches_a_command_line_or_a_file(
    unsigned_chart: Path, registry: Registry, tmp_path: Path
) -> None:
    """Every cosign, helm and gpg command keygen and sign run, through shims that log argv."""
    log = tmp_path / "argv.log"
    shims = tmp_path / "shims"
    shims.mkdir()
    real = {
        "J2K_COSIGN": tool("J2K_COSIGN"),
        "J2K_HELM": os.environ.get("J2K_HELM") or shutil.which("helm") or "helm",
        "J2K_GPG": shutil.which("gpg") or "gpg",
    }
    shimmed = {}
    for variable, binary in real.items():
        shim = shims / variable.lower()
        shim.write_text(f'#!/bin/sh\necho "$0 $*" >> {log}\nexec {binary} "$@"\n')
        shim.chmod(0o755)
        shimmed[variable] = str(shim)
    secret = "s3cret-not-in-argv"
    prefix = tmp_path / "k"
    _ok(_run("keygen", prefix, password=secret, **shimmed))
    chart = tmp_path / "out"
    shutil.copytree(unsigned_chart, chart)
    done = _ok(
        _run(
            "sign",
            chart,
            *("--key", f"{prefix}.key", "-d", tmp_path / "dist"),
            *("--oci", f"oci://{registry.host}/shimmed"),
            password=secret,
            **shimmed,
        )
    )
    logged = log.read_text()
    assert "j2k_cosign sign" in logged and "j2k_helm package" in logged
    assert "j2k_gpg" in logged and "j2k_helm push" in logged
    assert secret not in logged
    assert secret not in done.stdout + done.stderr
    assert secret not in (chart / RECORD).read_text()
    for path in (tmp_path / "dist").iterdir():
        assert secret.encode() not in path.read_bytes(), path


def test_deploy_verify_checks_a_pulled_chart(
    signed: tuple[Path, Done], keys: Path, other_keys: Path, tmp_path: Path
) -> None:
    chart, _ = signed
    name, _, digest = _record(chart)["chart"].partition("@")
    host, _, path = name.partition("/")
    repository = path.rsplit(":", 1)[0]
    tgz, pulled = pull_chart(Reference(host, repository), "0.1.0", tmp_path)
    assert pulled.digest == digest
    said: list[str] = []
    # as deploy_from_registry calls it
    api.verify_pulled_chart(Path(f"{keys}.pub"), log=said.append)(tgz, pulled)
    assert said[0] == f"verified chart {pulled}" and len(said) == 5
    # the pull brings the chart's .prov along, and it is checked too
    assert said[1] == f"verified provenance {tgz.name}.prov"
    with pytest.raises(SignatureError) as refused:
        verify_chart(tgz, pulled, Path(f"{other_keys}.pub"))
    assert "5 signature checks failed" in str(refused.value)  # the .prov too
    # the same tarball claimed under another digest: that digest carries no signature
    other = Reference(host, repository, "0.1.0", "sha256:" + "1" * 64)
    with pytest.raises(SignatureError, match=r"chart .*sha256:1111"):
        verify_chart(tgz, other, Path(f"{keys}.pub"))


def test_deploy_verify_from_the_command_line(
    signed: tuple[Path, Done], keys: Path, other_keys: Path, tmp_path: Path
) -> None:
    """``deploy oci:// --verify``: the check runs on the pulled bytes before any cluster is
    touched (here there is none: the kubeconfig does not exist)."""
    chart, _ = signed
    name = _record(chart)["chart"].partition("@")[0].rsplit(":", 1)[0]
    common = ["deploy", f"oci://{name}", "--version", "0.1.0", "--release", "r"]
    from tests.support.prometheus_server import free_port

    kubeconfig = tmp_path / "kubeconfig.yaml"  # an API server that is not there
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: 'https://127.0.0.1:{free_port()}'}}}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\nusers: [{name: u, user: {}}]\n"
    )
    nocluster = ["--kubeconfig", kubeconfig, "--timeout", "20s"]
    wrong = _run(*common, "--verify", "--key", f"{other_keys}.pub", *nocluster)
    _refused(wrong, "signature checks failed", f"chart {name}")
    right = _run(*common, "--verify", "--key", f"{keys}.pub", *nocluster)
    assert "verified chart" in right.stderr and "verified provenance" in right.stderr, right.stderr
    # verified, then on to the (absent) cluster: that is what fails now
    assert right.returncode != 0 and "signature" not in right.stderr.split("verified")[-1]
    _refused(_run(*common, "--key", f"{keys}.pub"), "--key and --keyring go with --verify")
    _refused(_run(*common, "--verify"), "--verify needs the public key")


def _on_a_terminal(args: list[str], answers: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``jup2kub ARGS`` on a pseudo-terminal, typing each answer at each password prompt;
    its exit code and everything it showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: jup2kub, its terminal the pty
        os.execve(sys.executable, [sys.executable, "-m", "jup2kub.cli", *args], env)
    shown, typed = b"", 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
        prompts = shown.count(b"Password for the new keys:") + shown.count(b"Repeat for")
        while typed < min(prompts, len(answers)):
            os.write(fd, answers[typed].encode() + b"\n")
            typed += 1
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_keygen_asks_twice_on_a_terminal(unsigned_chart: Path, tmp_path: Path) -> None:
    typed = "typed-on-the-terminal"
    env = _env(password=None)
    code, shown = _on_a_terminal(["keygen", str(tmp_path / "tty")], [typed, typed], env)
    assert code == 0, shown
    assert "Repeat for confirmation" in shown and typed not in shown  # asked twice, not echoed
    # the keys are protected by what was typed: it opens them, another password does not
    chart = tmp_path / "out"
    shutil.copytree(unsigned_chart, chart)
    sign = ("sign", chart, "--key", f"{tmp_path / 'tty'}.key", "-d", tmp_path / "dist")
    _refused(_run(*sign, password="not it"), "wrong password")
    _ok(_run(*sign, password=typed))
    # two different answers: asked again, until both agree
    answers = ["first", "typo", "second", "second"]
    code, shown = _on_a_terminal(["keygen", str(tmp_path / "again")], answers, env)
    assert code == 0 and "do not match" in shown, shown
    _ok(_run("sign", chart, "--key", f"{tmp_path / 'again'}.key", password="second"))


def test_a_registry_that_asks_for_credentials(keys: Path, tmp_path: Path) -> None:
    with running_registry(tmp_path / "auth", user="alice") as reg:
        assert reg.password is not None
        config = tmp_path / "docker-config"
        config.mkdir()
        auth = base64.b64encode(f"{reg.user}:{reg.password}".encode()).decode()
        (config / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
        logged_in = {"DOCKER_CONFIG": str(config)}
        digest = push_image(reg.host, "j2k/one", "private", tmp_path / "img", env=logged_in)
        chart = _build_chart(tmp_path / "out")
        point_at(chart, f"{reg.host}/j2k", {s: ("one", digest) for s in STEP_IMAGES})
        sign = ("sign", chart, "--key", f"{keys}.key", "-d", tmp_path / "dist")
        empty = tmp_path / "no-login"
        empty.mkdir()
        _refused(
            _run(*sign, DOCKER_CONFIG=str(empty)),
            "the registry asks for credentials",
            f"docker login {reg.host}",
            "images NOT signed",
        )
        # logged in the Docker way (what cosign and helm read), it signs and verifies
        _ok(_run(*sign, **logged_in))
        _ok(_run("verify", chart, "--key", f"{keys}.pub", password=None, **logged_in))
