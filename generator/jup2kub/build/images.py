"""Step images: a shared runtime layer and one image per step, built with the Docker SDK.

Every build context holds a wheelhouse resolved on the build host (``jup2kub.build.deps``) and is
built with network "none", so builds neither need nor silently use a package index. Images are
tagged ``REGISTRY/PIPELINE-STEP:<content hash>``, the hash covering everything that goes into
the image (base image id, Dockerfile, pinned packages, wheels, data files, platform). The step's
code bundle (``step.json``) is not in the image: the chart mounts it (a ConfigMap), so steps of
any pipeline with the same packages and data files share one image. An image with the content
hash is never rebuilt: this pipeline's own tag, a catalogued step's image or any local image
labelled with the hash is reused (``reusable``). ``push`` returns the registry digests the chart
pins.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import docker
import docker.errors

import jup2kub_runtime
from jup2kub.build import DEFAULT_BASE_IMAGE
from jup2kub.build.deps import Dependencies, Locks, Target, Wheel
from jup2kub.errors import ImageBuildError, InputError, UsageError
from jup2kub.plan import PipelinePlan
from jup2kub.version import __version__
from jup2kub_runtime.contract.config import DEFAULT_STATE_PATH

#: The chart's default ``storage.mountPath``: the image's working directory (see the Dockerfile).
DEFAULT_WORKDIR = str(DEFAULT_STATE_PATH)
RUNTIME_REPOSITORY = "jup2kub-runtime"
USER_ID = 10001
_DATA_MARKER = "# @DATA_FILES@"
_PROBE = (
    "import json, platform, sys; "
    "print(json.dumps({'python': list(sys.version_info[:2]), 'libc': platform.libc_ver()}))"
)

Log = Callable[[str], None]
#: content hash -> (image reference, digest, "PIPELINE/STEP") of catalogued steps whose image
#: has that tag (``Catalog.images_with_tag``)
Catalogued = Callable[[str], Iterable[tuple[str, str, str]]]
CONTENT_LABEL = "io.jup2kub.content-hash"
LAYER_LABEL = "io.jup2kub.layer"
_STEP_RESULT = re.compile(r"^ ---> ([0-9a-f]{12,64})$")
_FROM_STEP = re.compile(r"^Step \d+/\d+ : FROM ")


@dataclass(frozen=True)
class ImageOptions:
    """Choices for one image build (the ``jup2kub build`` flags)."""

    base_image: str = DEFAULT_BASE_IMAGE
    registry: str = ""
    platform: str | None = None
    push: bool = False
    wheel_cache: Path | None = None
    workdir: str = DEFAULT_WORKDIR


@dataclass
class BuiltImage:
    step: str
    repository: str  # REGISTRY/PIPELINE-STEP
    tag: str  # the content hash
    image_id: str
    built: bool  # False: an image with this content hash existed and was reused
    seconds: float
    size: int
    digest: str | None = None  # sha256:... after a push
    #: how an unbuilt image was found: "" (built), "own" (this pipeline's tag existed),
    #: "catalog:PIPELINE/STEP" or "label" (a local image with the same content hash)
    reused: str = ""
    #: the repository as the chart's ``steps.<name>.image.repository`` writes it (without the
    #: build's registry, which ``image.registry`` adds)
    chart_repository: str = ""
    #: the SBOM's referrer (``REPOSITORY@sha256:...``) once attached to the pushed image
    sbom: str = ""

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass
class BuildResult:
    runtime_image: str
    base_image: str  # as used in FROM (by digest when known)
    base_image_id: str
    target: Target
    images: dict[str, BuiltImage] = field(default_factory=dict)

    @property
    def tags(self) -> dict[str, str]:
        """step -> tag, for ``ChartOptions.image_tags``."""
        return {s: i.tag for s, i in self.images.items()}

    @property
    def repositories(self) -> dict[str, str]:
        """step -> repository relative to the registry, for ``ChartOptions.image_repositories``."""
        return {s: i.chart_repository for s, i in self.images.items() if i.chart_repository}

    @property
    def digests(self) -> dict[str, str]:
        """step -> registry digest of pushed images, for ``ChartOptions.image_digests``."""
        return {s: i.digest for s, i in self.images.items() if i.digest}

    def to_json(self) -> dict[str, Any]:
        return {
            "generator": f"jup2kub {__version__}",
            "base_image": self.base_image,
            "base_image_id": self.base_image_id,
            "runtime_image": self.runtime_image,
            "target": self.target.describe(),
            "steps": {
                s: {
                    "image": i.reference,
                    "digest": i.digest,
                    "image_id": i.image_id,
                    "size": i.size,
                    **({"reused": i.reused} if i.reused else {}),
                    **({"sbom": i.sbom} if i.sbom else {}),
                }
                for s, i in sorted(self.images.items())
            },
        }


# --------------------------------------------------------------------------- engine


def engine(timeout: float = 600.0) -> docker.DockerClient:
    """A client of the local Docker engine (DOCKER_HOST etc. as the docker CLI reads them),
    or a UsageError saying how to proceed when none answers."""
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        raise UsageError(
            f"no Docker engine answers ({type(exc).__name__})",
            hint="start Docker (dockerd) or point DOCKER_HOST at an engine and build again, "
            "or pass --no-images to write the chart only and build the images elsewhere",
        ) from exc
    return client


def _base(
    client: docker.DockerClient, name: str, platform: str | None, log: Log
) -> tuple[str, str]:
    """(reference to use in FROM, image id), pulling the base image when it is not local."""
    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        log(f"pulling base image {name}")
        try:
            image = client.images.pull(name, platform=platform)
        except docker.errors.APIError as exc:
            raise UsageError(
                f"the base image {name!r} is not on this engine and cannot be pulled "
                f"({exc.explanation or exc})",
                hint="pull or build it first, pass --base-image with one that is, or pass "
                "--no-images to write the chart only",
            ) from exc
    repo = name.split("@")[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    for digest_ref in image.attrs.get("RepoDigests") or []:
        if digest_ref.split("@")[0] == repo:
            return str(digest_ref), str(image.id)
    return name, str(image.id)


def probe_target(
    client: docker.DockerClient, base_image: str, platform: str | None = None
) -> Target:
    """The base image's Python version and glibc, read by running it (no network)."""
    _base(client, base_image, platform, lambda _msg: None)
    try:
        out = client.containers.run(
            base_image,
            ["python3", "-c", _PROBE],
            remove=True,
            network_mode="none",
            platform=platform,
            entrypoint=[],
        )
        info = json.loads(out.decode().strip().splitlines()[-1])
        libc, version = info["libc"]
        glibc = tuple(int(x) for x in version.split(".")[:2]) if libc == "glibc" else None
    except (docker.errors.DockerException, ValueError, KeyError, IndexError) as exc:
        raise UsageError(
            f"cannot run python3 in the base image {base_image!r} ({exc})",
            hint="the base image needs python3 (3.10+, glibc-based) on its PATH",
        ) from exc
    if glibc is None or len(glibc) != 2:
        raise UsageError(
            f"the base image {base_image!r} is not glibc-based (musl wheels are not supported)",
            hint="use a Debian/Ubuntu-based Python image",
        )
    py = info["python"]
    return Target((int(py[0]), int(py[1])), platform or "linux/amd64", (glibc[0], glibc[1]))


# --------------------------------------------------------------------------- contexts


def dockerfile(kind: str) -> str:
    """The text of ``dockerfiles/<kind>.Dockerfile`` (kind: runtime | step)."""
    return (resources.files(__package__) / "dockerfiles" / f"{kind}.Dockerfile").read_text(
        encoding="utf-8"
    )


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _hash_context(ctx: Path, extra: Mapping[str, str]) -> str:
    """sha256 over every file of the context (path and content) plus ``extra``."""
    h = hashlib.sha256()
    for key in sorted(extra):
        h.update(f"{key}={extra[key]}\n".encode())
    for path in sorted(p for p in ctx.rglob("*") if p.is_file()):
        h.update(path.relative_to(ctx).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def _runtime_source() -> Path:
    return Path(jup2kub_runtime.__file__).parent


def runtime_context(ctx: Path, locks: Locks) -> None:
    """Fill ``ctx`` with the runtime layer's build context."""
    (ctx / "Dockerfile").write_text(dockerfile("runtime"), encoding="utf-8")
    (ctx / "runtime.lock").write_text(locks.runtime, encoding="utf-8")
    for name in _lock_names(locks.runtime):
        w = locks.wheels[name]
        _link(w.path, ctx / "wheels" / w.path.name)
    (ctx / "wheels").mkdir(exist_ok=True)
    src = _runtime_source()
    for f in sorted(src.rglob("*")):
        if f.is_file() and f.suffix in (".py", ".typed") and "__pycache__" not in f.parts:
            dst = ctx / "jup2kub_runtime" / f.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)


def _lock_names(text: str) -> list[str]:
    return [
        line.split("==")[0]
        for line in text.splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    ]


def step_context(ctx: Path, step: str, deps: Dependencies, locks: Locks) -> None:
    """Fill ``ctx`` with one step's build context: its pinned packages and data files only.
    The lock goes in as pins (no comments: those name the step and pipeline), so steps of
    any pipeline that need the same packages and files get the same content hash."""
    text = locks.steps[step]
    runtime_names = set(_lock_names(locks.runtime))
    install = _filter_lock(text, keep=lambda n: n not in runtime_names)
    (ctx / "requirements.lock").write_text(_pins(text), encoding="utf-8")
    (ctx / "step-install.lock").write_text(_pins(install), encoding="utf-8")
    (ctx / "wheels").mkdir()
    for name in _lock_names(install):
        w: Wheel = locks.wheels[name]
        _link(w.path, ctx / "wheels" / w.path.name)
    copies = []
    for i, f in enumerate(f for f in deps.steps[step].data_files if f.placement == "image"):
        rel = f"data/{i}-{Path(f.path).name}"
        _link(Path(f.path), ctx / rel)
        copies.append(f"COPY {json.dumps([rel, f.path])}")
    text = dockerfile("step")
    text = (
        "\n".join(
            ("\n".join(copies) if line.startswith(_DATA_MARKER) else line)
            for line in text.splitlines()
            if not (line.startswith(_DATA_MARKER) and not copies)
        )
        + "\n"
    )
    (ctx / "Dockerfile").write_text(text, encoding="utf-8")


def _pins(lock: str) -> str:
    """A lock's requirement lines and hashes, without its comments."""
    body = [
        line for line in lock.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    return "\n".join(["# pinned packages of a Jup2Kub step image (hashes checked)", *body]) + "\n"


def _filter_lock(text: str, keep: Callable[[str], bool]) -> str:
    """The lock's header and the entries (with their continuation lines) ``keep`` accepts."""
    out, current = [], True
    for line in text.splitlines():
        if line.startswith("#"):
            out.append(line)
        elif line.startswith(" "):
            if current:
                out.append(line)
        else:
            current = keep(line.split("==")[0])
            if current:
                out.append(line)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- build / push


def _exists(client: docker.DockerClient, ref: str) -> Any | None:
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _build(
    client: docker.DockerClient,
    ctx: Path,
    ref: str,
    what: str,
    buildargs: Mapping[str, str],
    platform: str | None,
    labels: Mapping[str, str],
    log: Log,
) -> Any:
    lines: list[str] = []
    stages: list[str] = []  # ids of finished install stages: untagged, ours to remove
    last_id = None
    try:
        stream = client.api.build(
            path=str(ctx),
            tag=ref,
            buildargs=dict(buildargs),
            platform=platform,
            network_mode="none",
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            labels=dict(labels),
        )
        for chunk in stream:
            if "stream" in chunk:
                for line in str(chunk["stream"]).splitlines():
                    lines.append(line)
                    m = _STEP_RESULT.match(line)
                    if m:
                        last_id = m.group(1)
                    elif _FROM_STEP.match(line) and last_id:
                        stages.append(last_id)
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                tail = "\n".join(lines[-25:])
                raise ImageBuildError(
                    f"building the image of {what} failed: {detail}",
                    where=what,
                    hint=f"build log (last lines):\n{tail}",
                )
    except docker.errors.APIError as exc:
        raise ImageBuildError(
            f"building the image of {what} failed: {exc.explanation or exc}", where=what
        ) from exc
    image = _exists(client, ref)
    if image is None:
        raise ImageBuildError(f"the engine reported no image {ref} for {what}", where=what)
    # The classic builder keeps each install stage as an untagged image: drop ours (only
    # those of this build: a concurrent build may still need its own).
    for stage in stages:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(stage)
    return image


# --------------------------------------------------------------------------- reuse


@dataclass(frozen=True)
class Found:
    """An existing image with a step's content: its repository (as the chart names it,
    relative to the build's registry), the image, and how it was found (``BuiltImage.reused``)."""

    repository: str
    image: Any
    how: str

    def describe(self, registry: str, tag: str) -> str:
        ref = f"{repository(registry, self.repository)}:{tag}"
        if self.how == "own":
            return f"unchanged, not rebuilt ({ref} exists)"
        if self.how.startswith("catalog:"):
            return f"reused catalogued image {ref} (of {self.how[len('catalog:') :]}), not built"
        return f"reused image {ref} (same content hash), not built"


def _content_hash(image: Any) -> str:
    return str(((image.attrs.get("Config") or {}).get("Labels") or {}).get(CONTENT_LABEL, ""))


def _relative(reference: str, registry: str, tag: str) -> str | None:
    """The repository of ``reference`` (``REPO:TAG``) relative to ``registry``, or None when
    it has another tag or lies outside that registry (the chart adds the registry; with none,
    only a local name counts, not another registry's)."""
    repo, sep, ref_tag = reference.rpartition(":")
    if not sep or ref_tag != tag or "/" in ref_tag:
        return None
    prefix = registry.rstrip("/") + "/" if registry else ""
    if not repo.startswith(prefix) or not repo[len(prefix) :]:
        return None
    first, slash, _ = repo.partition("/")
    if not registry and slash and ("." in first or ":" in first or first == "localhost"):
        return None
    return repo[len(prefix) :]


def _tag(image: Any, repo: str, tag: str) -> None:
    """Name an existing image ``repo:tag`` as well (instead of building the same content)."""
    try:
        image.tag(repo, tag)
    except docker.errors.APIError as exc:
        raise ImageBuildError(
            f"tagging image {image.id} as {repo}:{tag} failed: {exc.explanation or exc}",
            where=repo,
        ) from exc


def reusable(
    client: docker.DockerClient,
    content: str,
    registry: str,
    own: str,
    catalogued: Catalogued | None = None,
) -> Found | None:
    """An image on this engine with the content hash ``content``, in this order: this
    pipeline's own tag (``own``: the plan's repository), a catalogued step's image, any image
    labelled with the hash. An image found outside ``registry`` is tagged into it under
    ``own`` (no build); None when there is none."""
    image = _exists(client, f"{repository(registry, own)}:{content}")
    if image is not None:
        return Found(own, image, "own")
    for reference, _digest, key in catalogued(content) if catalogued else ():
        image = _exists(client, reference)
        if image is None or _content_hash(image) != content:
            continue  # catalogued, but not on this engine (or another image by that name)
        rel = _relative(reference, registry, content)
        if rel is not None:
            return Found(rel, image, f"catalog:{key}")
        _tag(image, repository(registry, own), content)
        return Found(own, image, f"catalog:{key}")
    try:
        labelled = client.images.list(
            filters={"label": [f"{CONTENT_LABEL}={content}", f"{LAYER_LABEL}=step"]}
        )
    except docker.errors.APIError:
        labelled = []
    labelled.sort(key=lambda i: str(i.id))
    for image in labelled:
        for tag in sorted(image.tags):
            rel = _relative(tag, registry, content)
            if rel is not None:
                return Found(rel, image, "label")
    if labelled:
        _tag(labelled[0], repository(registry, own), content)
        return Found(own, labelled[0], "label")
    return None


def push(client: docker.DockerClient, repository: str, tag: str) -> str:
    """Push ``repository:tag``; returns the registry's manifest digest (sha256:...)."""
    digest = None
    try:
        for line in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise ImageBuildError(
                    f"pushing {repository}:{tag} failed: {line['error']}",
                    where=repository,
                    hint="check that the registry is reachable and accepts pushes "
                    "(log in with `docker login` when it needs credentials)",
                )
            aux = line.get("aux") or {}
            if aux.get("Digest"):
                digest = str(aux["Digest"])
    except docker.errors.APIError as exc:
        raise ImageBuildError(
            f"pushing {repository}:{tag} failed: {exc.explanation or exc}", where=repository
        ) from exc
    if not digest:
        raise ImageBuildError(
            f"the registry returned no digest for {repository}:{tag}", where=repository
        )
    return digest


def repository(registry: str, name: str) -> str:
    """``REGISTRY/NAME``, NAME being the plan's image repository of a step (as in the chart)."""
    return f"{registry.rstrip('/')}/{name}" if registry else name


def build_images(
    plan: PipelinePlan,
    deps: Dependencies,
    locks: Locks,
    options: ImageOptions | None = None,
    *,
    client: docker.DockerClient | None = None,
    steps: Iterable[str] | None = None,
    log: Log | None = None,
    catalogued: Catalogued | None = None,
) -> BuildResult:
    """Build (or reuse) the runtime layer and every step's image; push them when asked.

    ``deps``/``locks`` come from ``jup2kub.build.deps`` for the same target as the base image
    (``probe_target``). ``log`` gets one line per image, saying whether it was rebuilt or
    which existing image with the same content it reuses (``reusable``; ``catalogued`` looks
    catalogued steps' images up by content hash).
    """
    options = options or ImageOptions()
    client = client or engine()
    say: Log = log or (lambda _msg: None)
    if deps.target.platform != (options.platform or "linux/amd64"):
        raise UsageError(
            f"the locks were made for {deps.target.platform}, the build is for "
            f"{options.platform or 'linux/amd64'}",
            hint="capture dependencies with the Target of the build (probe_target)",
        )
    base_ref, base_id = _base(client, options.base_image, options.platform, say)
    specs = {s.name: s for s in plan.steps}
    wanted = list(steps) if steps is not None else list(specs)
    unknown = [s for s in wanted if s not in specs]
    if unknown:
        raise InputError(f"no step named {unknown[0]!r}", hint="known: " + ", ".join(specs))
    common = {
        "base": base_id,
        "platform": options.platform or "",
        "generator": "images/2",  # 2: the code bundle left the image
        "workdir": options.workdir,
    }
    with tempfile.TemporaryDirectory(prefix="jup2kub-images-") as tmp:
        ctx = Path(tmp) / "runtime"
        ctx.mkdir()
        runtime_context(ctx, locks)
        rt_hash = _hash_context(ctx, common)[:16]
        runtime_ref = f"{RUNTIME_REPOSITORY}:{rt_hash}"
        t0 = time.monotonic()
        if _exists(client, runtime_ref) is None:
            say(f"runtime layer: building {runtime_ref}")
            _build(
                client,
                ctx,
                runtime_ref,
                "the runtime layer",
                {"BASE_IMAGE": base_ref, "WORKDIR": options.workdir},
                options.platform,
                {LAYER_LABEL: "runtime", CONTENT_LABEL: rt_hash},
                say,
            )
            say(f"runtime layer: built in {time.monotonic() - t0:.1f}s")
        else:
            say(f"runtime layer: unchanged, reusing {runtime_ref}")
        result = BuildResult(runtime_ref, base_ref, base_id, deps.target)
        for step in wanted:
            ctx = Path(tmp) / f"step-{step}"
            ctx.mkdir()
            step_context(ctx, step, deps, locks)
            digest = _hash_context(ctx, {**common, "runtime": runtime_ref})[:16]
            own = specs[step].image_repository
            t0 = time.monotonic()
            found = reusable(client, digest, options.registry, own, catalogued)
            if found is None:
                ref = f"{repository(options.registry, own)}:{digest}"
                say(f"step {step}: building {ref}")
                image = _build(
                    client,
                    ctx,
                    ref,
                    f"step {step!r}",
                    {"RUNTIME_IMAGE": runtime_ref},
                    options.platform,
                    # no pipeline or step label: the image is any step's with this content (the
                    # catalog records which steps use it)
                    {LAYER_LABEL: "step", CONTENT_LABEL: digest},
                    say,
                )
                found = Found(own, image, "")
                say(f"step {step}: built in {time.monotonic() - t0:.1f}s")
            else:
                say(f"step {step}: {found.describe(options.registry, digest)}")
            result.images[step] = BuiltImage(
                step,
                repository(options.registry, found.repository),
                digest,
                str(found.image.id),
                not found.how,
                time.monotonic() - t0,
                int(found.image.attrs.get("Size") or 0),
                reused=found.how,
                chart_repository=found.repository if found.repository != own else "",
            )
            shutil.rmtree(ctx, ignore_errors=True)
    if options.push:
        for img in result.images.values():
            img.digest = push(client, img.repository, img.tag)
            say(f"step {img.step}: pushed {img.reference} ({img.digest})")
    return result


def build_files(
    deps: Dependencies, locks: Locks, result: BuildResult | None = None
) -> dict[str, bytes]:
    """What the build leaves in OUT for audit, by path relative to OUT: ``images/`` with the
    Dockerfile templates, the runtime and per-step locks, the trace summary, the data-file list
    and (after a build) which image each step got. No environment value is in any of them."""
    files: dict[str, bytes] = {
        "images/runtime.Dockerfile": dockerfile("runtime").encode(),
        "images/step.Dockerfile": dockerfile("step").encode(),
        "images/runtime.lock": locks.runtime.encode(),
    }
    for step, text in locks.steps.items():
        files[f"images/{step}/requirements.lock"] = text.encode()
    if deps.trace_summary is not None:
        files["images/trace-summary.json"] = (
            json.dumps(deps.trace_summary, indent=2, sort_keys=True) + "\n"
        ).encode()
    if deps.data_files:
        files["images/data-files.json"] = (
            json.dumps([f.to_json() for f in deps.data_files], indent=2) + "\n"
        ).encode()
    if deps.warnings:
        files["images/warnings.txt"] = ("\n".join(deps.warnings) + "\n").encode()
    if result is not None:
        files["images/images.json"] = (
            json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n"
        ).encode()
    return files


def write_files(files: Mapping[str, bytes], out: Path) -> list[Path]:
    """Write ``build_files`` output under ``out`` (for callers not merging it into the chart)."""
    written = []
    for rel, data in sorted(files.items()):
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return written
