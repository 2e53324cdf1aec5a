"""ONNX Runtime's C/C++ headers, which its Python wheel does not ship.

Debian packages them (`libonnxruntime-dev`, trixie: 1.21, C API version 21). They are fetched
with `apt-get download` through a private sources list, so the host's apt configuration is
never touched, and unpacked (not installed) into the cache. Code written against API 21 runs on
the wheel's newer library, which serves every API version up to its own. Where the headers are
already on the machine (`DEPLOYBENCH_ORT_INCLUDE`, or an installed libonnxruntime-dev) those
are used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench import cache
from bench.errors import Unsupported

INCLUDE_ENV = "DEPLOYBENCH_ORT_INCLUDE"
SYSTEM_INCLUDE = Path("/usr/include/onnxruntime")
HEADER = "onnxruntime_cxx_api.h"
PACKAGE = "libonnxruntime-dev"
SUITE = "trixie"  # the first Debian release that packages ONNX Runtime
SOURCES = f"""Types: deb
URIs: http://deb.debian.org/debian
Suites: {SUITE}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def _has_headers(folder: Path) -> bool:
    return (folder / HEADER).is_file()


def _apt_options(root: Path) -> list[str]:
    """apt options that read only the private sources list and keep every state file under
    `root` (no lists, cache or status of the host's are read or written)."""
    (root / "lists" / "partial").mkdir(parents=True)
    (root / "cache" / "archives" / "partial").mkdir(parents=True)
    (root / "sources" / f"{SUITE}.sources").parent.mkdir()
    (root / "sources" / f"{SUITE}.sources").write_text(SOURCES)
    settings = {
        "Dir::Etc::SourceList": "/dev/null",
        "Dir::Etc::SourceParts": root / "sources",
        "Dir::State::Lists": root / "lists",
        "Dir::Cache": root / "cache",
        "Dir::State::Status": "/dev/null",
        "APT::Sandbox::User": "root" if os.geteuid() == 0 else "",
    }
    return [arg for key, value in settings.items() if value for arg in ("-o", f"{key}={value}")]


def _run(cmd: list[str], cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Unsupported(
            f"fetching ONNX Runtime's C++ headers failed ({' '.join(cmd[:1] + cmd[-2:])}): "
            f"{(done.stderr or done.stdout)[-1500:].strip()}"
        )
    return done.stdout


def fetch(dest: Path) -> str:
    """Download and unpack the package's headers into `dest/include`; returns its version."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise Unsupported(
                f"ONNX Runtime's C++ headers are not here ({INCLUDE_ENV} unset, no "
                f"{SYSTEM_INCLUDE}) and fetching them needs {tool} (Debian's {PACKAGE})"
            )
    with tempfile.TemporaryDirectory(prefix="deploybench-ort-headers-") as work:
        root = Path(work)
        options = _apt_options(root / "apt")
        _run(["apt-get", *options, "-qq", "update"], root)
        _run(["apt-get", *options, "-qq", "download", PACKAGE], root)
        (deb,) = root.glob(f"{PACKAGE}_*.deb")
        _run(["dpkg-deb", "-x", str(deb), str(root / "x")], root)
        shutil.copytree(root / "x" / "usr" / "include" / "onnxruntime", dest / "include")
        version = deb.name.split("_")[1]
    (dest / "VERSION").write_text(version + "\n")
    return version


def include_dir() -> Path:
    """The folder holding onnxruntime_cxx_api.h: given, installed, or fetched once (cached)."""
    if given := os.environ.get(INCLUDE_ENV):
        if not _has_headers(Path(given)):
            raise Unsupported(f"{INCLUDE_ENV}={given} holds no {HEADER}")
        return Path(given)
    if _has_headers(SYSTEM_INCLUDE):
        return SYSTEM_INCLUDE
    folder, _ = cache.entry("ort-headers", PACKAGE, SUITE).get(fetch)
    return folder / "include"


def describe() -> str:
    """Where the headers come from here, without fetching them (for `bench info`)."""
    if given := os.environ.get(INCLUDE_ENV):
        return f"{INCLUDE_ENV}={given}"
    if _has_headers(SYSTEM_INCLUDE):
        return f"installed in {SYSTEM_INCLUDE}"
    found = cache.entry("ort-headers", PACKAGE, SUITE).lookup()
    if found is not None:
        version = (found / "VERSION").read_text().strip()
        return f"Debian's {PACKAGE} {version}, fetched into {found}"
    return f"Debian {SUITE}'s {PACKAGE}, fetched with apt-get download on first build"
