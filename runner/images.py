"""The framework images: which image runs which framework, and building them (Docker SDK).

Each image's build context is assembled here, so it holds only what the image needs: its
Dockerfile and requirements.txt, the bench source (`src/`), the CA of the host's pip proxy
(`ca.pem`, empty without `PIP_CERT`) and, on hosts with a local wheelhouse, the wheels the host's
pip prefetched (`wheels/`). Builds use the host network (the legacy builder's
``network_mode="host"``) so that a host whose registries sit behind a proxy can build.

A framework's other versions (a matrix's `versions:` axis, a model's pin) are images too: the
same Dockerfile with `images/<image>/versions/<version>/requirements.txt`, tagged
`deploybench/<image>:<version>`; which versions exist is which of those folders exist.

An image is rebuilt when the hash of its context (Dockerfile, requirements, bench source,
build arguments) differs from the `ai.deploybench.context-sha256` label of the existing one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from bench.errors import UsageError
from bench.frameworks import FRAMEWORKS
from bench.models import is_onnx_model
from bench.native.build import source_files as native_sources
from bench.registry import Registry

REPO = Path(__file__).resolve().parents[1]
IMAGES_DIR = REPO / "images"
DEFAULT_BASE = "python:3.11-slim-bookworm"
OFFLINE_BASE = "deploybench/base:bookworm"
SOURCE_URL = "https://github.com/deploybench/deploybench"
LABEL_PREFIX = "ai.deploybench"
# Packages whose versions an image's labels announce.
FRAMEWORK_PACKAGES = (
    "torch",
    "torchvision",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "apache-tvm",
    "tensorrt-cu13",
    "numpy",
)


@dataclass(frozen=True)
class ImageSpec:
    """One framework x device image; which frameworks it runs is the framework table's.
    `version`: another version of its framework than the default image pins."""

    name: str
    device: str
    exports: bool = False  # runs the export stage (needs torch)
    version: str | None = None

    @property
    def key(self) -> str:
        """Unique among all images, versions included (manifest, image ids)."""
        return f"{self.name}@{self.version}" if self.version else self.name

    @property
    def requirements_dir(self) -> Path:
        return self.dir / "versions" / self.version if self.version else self.dir

    def at(self, version: str | None) -> ImageSpec:
        return replace(self, version=version)

    @property
    def frameworks(self) -> tuple[str, ...]:
        return tuple(
            f for f in FRAMEWORKS if FRAMEWORKS.get(f).images.get(self.device) == self.name
        )

    @property
    def dir(self) -> Path:
        return IMAGES_DIR / self.name

    def tag(self, prefix: str = "deploybench") -> str:
        return f"{prefix}/{self.name}:{self.version or 'latest'}"


IMAGES: Registry[ImageSpec] = Registry("image")
for _spec in (
    ImageSpec("torch-cpu", "cpu", exports=True),
    ImageSpec("ort-cpu", "cpu"),
    ImageSpec("ov-cpu", "cpu"),
    ImageSpec("tvm-cpu", "cpu"),
    ImageSpec("torch-gpu", "cuda", exports=True),
    ImageSpec("ort-gpu", "cuda"),
    ImageSpec("trt-gpu", "cuda"),
    ImageSpec("tvm-gpu", "cuda"),
):
    IMAGES.add(_spec.name, _spec)


def _pins(requirements: Path) -> dict[str, str]:
    """A lock file's exact pins: {lower-case name: version}, in file order."""
    pins = {}
    for line in requirements.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[name.strip().lower()] = version.strip()
    return pins


def _pinned(requirements: Path, package: str) -> str | None:
    return _pins(requirements).get(package)


def built_versions(framework: str, device: str) -> dict[str, ImageSpec]:
    """Every version of `framework` on `device` that has an image: {version: image}, the
    default image's first. A versions folder whose lock pins another version is refused."""
    spec = _default_image(framework, device)
    package = FRAMEWORKS.get(framework).package(device)
    out = {}
    if default := _pinned(spec.dir / "requirements.txt", package):
        out[default] = spec
    for req in sorted((spec.dir / "versions").glob("*/requirements.txt")):
        version = req.parent.name
        if _pinned(req, package) != version:
            raise UsageError(f"{req} does not pin {package}=={version}; re-run images/lock.py")
        out[version] = spec.at(version)
    return out


def version_unavailable(framework: str, device: str, version: str | None) -> str | None:
    """Why no image runs this version (None: one does, or no version is asked for)."""
    if version is None:
        return None
    versions = built_versions(framework, device)
    return None if version in versions else _no_image(framework, device, version, versions)


def _no_image(framework: str, device: str, version: str, versions: dict[str, ImageSpec]) -> str:
    spec = _default_image(framework, device)
    package = FRAMEWORKS.get(framework).package(device)
    return (
        f"no image has {package} {version}; versions with an image: {', '.join(versions)} "
        f"(add one: images/{spec.name}/versions/{version}/requirements.in, then "
        f"python images/lock.py {spec.name}/versions/{version})"
    )


def _default_image(framework: str, device: str) -> ImageSpec:
    image = FRAMEWORKS.get(framework).images.get(device)
    if image is None:
        raise UsageError(
            f"no image runs {framework} on {device}; images: {', '.join(IMAGES.names())}"
        )
    return IMAGES.get(image)


def image_for(framework: str, device: str, version: str | None = None) -> ImageSpec:
    """The image that runs `framework` on `device` at `version` (None: the default image)."""
    if version is None:
        return _default_image(framework, device)
    versions = built_versions(framework, device)  # the image folders, read once
    if version not in versions:
        raise UsageError(_no_image(framework, device, version, versions))
    return versions[version]


def export_framework(model: str) -> tuple[str, str]:
    """Which framework's CPU image exports `model`: torch builds torchvision models; a user's
    ONNX file needs only ONNX Runtime (its reference), so the small ort-cpu image does it."""
    return ("onnxruntime", "cpu") if is_onnx_model(model) else ("torch", "cpu")


def export_image(model: str) -> ImageSpec:
    return image_for(*export_framework(model))


@dataclass(frozen=True)
class BuildSettings:
    """How images are built on this host."""

    base_image: str | None = None  # None: the Dockerfile's default (a registry image)
    torch_index_url: str | None = None  # None: the Dockerfile's default; "": PyPI's default
    pip_cert: str | None = field(default_factory=lambda: os.environ.get("PIP_CERT"))
    prefetch_wheels: bool = field(default_factory=lambda: bool(os.environ.get("PIP_FIND_LINKS")))
    revision: str = "unknown"

    def buildargs(self) -> dict[str, str]:
        args = {"REVISION": self.revision}
        if self.base_image:
            args["BASE_IMAGE"] = self.base_image
        if self.torch_index_url is not None:
            args["TORCH_INDEX_URL"] = self.torch_index_url
        return args


def _source_files() -> list[Path]:
    files = [
        REPO / "pyproject.toml",
        *sorted((REPO / "bench").rglob("*.py")),
        *sorted((REPO / "bench" / "schema").glob("*.json")),
        *native_sources(),
        *sorted((REPO / "runner").rglob("*.py")),
        *sorted((REPO / "runner").rglob("*.yaml")),
    ]
    return [f for f in files if "__pycache__" not in f.parts]


def context_hash(spec: ImageSpec, settings: BuildSettings) -> str:
    digest = hashlib.sha256()
    for path in [
        spec.dir / "Dockerfile",
        spec.requirements_dir / "requirements.txt",
        *_source_files(),
    ]:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    for key, value in sorted(settings.buildargs().items()):
        if key != "REVISION":
            digest.update(f"{key}={value}\0".encode())
    return digest.hexdigest()


def wheel_cache_dir(spec: ImageSpec, settings: BuildSettings) -> Path:
    """Where the host keeps an image's prefetched wheels, keyed by what decides them."""
    root = Path(os.environ.get("DEPLOYBENCH_CACHE", Path.home() / ".cache" / "deploybench"))
    key = hashlib.sha256(
        (spec.requirements_dir / "requirements.txt").read_bytes()
        + str(settings.torch_index_url).encode()
    ).hexdigest()[:16]
    return root / "wheels" / f"{spec.name}-{key}"


def _prefetch(spec: ImageSpec, settings: BuildSettings, log: Callable[[str], None]) -> Path | None:
    """Let the host's pip (its indexes, wheelhouse, proxy) download the image's wheels, once."""
    cache = wheel_cache_dir(spec, settings)
    if (cache / ".complete").is_file():
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "-d",
        str(cache),
        "-r",
        str(spec.requirements_dir / "requirements.txt"),
    ]
    if settings.torch_index_url:
        cmd += ["--extra-index-url", settings.torch_index_url]
    log(f"{spec.key}: prefetching wheels with the host's pip into {cache}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:  # not fatal: the build then installs from the index itself
        detail = proc.stderr.strip()[-300:]
        log(f"{spec.key}: prefetch incomplete, the build uses the index: {detail}")
        return cache
    (cache / ".complete").touch()
    return cache


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # same filesystem: no copy of gigabytes of wheels
    except OSError:
        shutil.copy(source, target)


def assemble_context(
    spec: ImageSpec, settings: BuildSettings, dest: Path, log: Callable[[str], None]
) -> None:
    shutil.copy(spec.dir / "Dockerfile", dest / "Dockerfile")
    shutil.copy(spec.requirements_dir / "requirements.txt", dest / "requirements.txt")
    cert = Path(settings.pip_cert) if settings.pip_cert else None
    (dest / "ca.pem").write_bytes(cert.read_bytes() if cert and cert.is_file() else b"")
    (dest / "wheels").mkdir()
    wheels = _prefetch(spec, settings, log) if settings.prefetch_wheels else None
    for wheel in wheels.glob("*.whl") if wheels else []:
        _link_or_copy(wheel, dest / "wheels" / wheel.name)
    src = dest / "src"
    for path in [*_source_files(), REPO / "README.md"]:
        target = src / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)


def _framework_versions(spec: ImageSpec) -> str:
    pins = _pins(spec.requirements_dir / "requirements.txt")
    return " ".join(f"{n}=={v}" for n, v in pins.items() if n in FRAMEWORK_PACKAGES)


def labels(spec: ImageSpec, settings: BuildSettings, ctx_hash: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": f"deploybench {spec.key}",
        "org.opencontainers.image.source": SOURCE_URL,
        "org.opencontainers.image.revision": settings.revision,
        "org.opencontainers.image.created": datetime.now(timezone.utc).isoformat(
            timespec="seconds"
        ),
        f"{LABEL_PREFIX}.frameworks": _framework_versions(spec),
        f"{LABEL_PREFIX}.device": spec.device,
        f"{LABEL_PREFIX}.context-sha256": ctx_hash,
    }


class BuildError(RuntimeError):
    """An image build failed; the message ends with the build log's tail."""


def current_image_id(client: object, spec: ImageSpec, settings: BuildSettings) -> str | None:
    """The id of the existing image if it was built from the current context, else None."""
    import docker.errors

    try:
        image = client.images.get(spec.tag())
    except docker.errors.ImageNotFound:
        return None
    built_from = (image.labels or {}).get(f"{LABEL_PREFIX}.context-sha256")
    return image.id if built_from == context_hash(spec, settings) else None


def build_image(
    client: object, spec: ImageSpec, settings: BuildSettings, log: Callable[[str], None] = print
) -> str:
    """Build one image (streaming its log through `log`); returns the image id."""
    ctx_hash = context_hash(spec, settings)
    tail: list[str] = []
    with tempfile.TemporaryDirectory(prefix=f"deploybench-{spec.name}-") as tmp:
        assemble_context(spec, settings, Path(tmp), log)
        stream = client.api.build(
            path=tmp,
            tag=spec.tag(),
            buildargs=settings.buildargs(),
            network_mode="host",
            labels=labels(spec, settings, ctx_hash),
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                raise BuildError(
                    f"building {spec.key} failed: {chunk['error'].strip()}\n" + "".join(tail[-30:])
                )
            line = chunk.get("stream", "")
            if line.strip():
                tail.append(line)
                if line.startswith("Step "):
                    log(f"{spec.key}: {line.strip()}")
    return client.images.get(spec.tag()).id


def ensure_images(
    client: object,
    specs: list[ImageSpec],
    settings: BuildSettings,
    log: Callable[[str], None] = print,
    rebuild: bool = False,
) -> dict[str, str]:
    """Build the missing or stale images among `specs`; returns {image key: image id}."""
    ids = {}
    for spec in specs:
        existing = None if rebuild else current_image_id(client, spec, settings)
        if existing:
            log(f"{spec.key}: up to date ({existing[:19]})")
            ids[spec.key] = existing
        else:
            log(f"{spec.key}: building")
            ids[spec.key] = build_image(client, spec, settings, log)
    if reclaimed := prune_superseded(client):
        log(f"removed superseded deploybench images ({reclaimed / 2**30:.1f} GiB)")
    return ids


def prune_superseded(client: object) -> int:
    """Remove this project's untagged images: the build stages and the images a rebuild
    replaced. Every change to bench/ rebuilds every image (the torch ones are 6.5 GB), so
    without this a few rebuilds fill a disk. Returns the bytes reclaimed."""
    reclaimed = 0
    for label in (f"{LABEL_PREFIX}.stage=build", f"{LABEL_PREFIX}.context-sha256"):
        pruned = client.images.prune(filters={"dangling": True, "label": label})
        reclaimed += pruned.get("SpaceReclaimed") or 0
    return reclaimed
