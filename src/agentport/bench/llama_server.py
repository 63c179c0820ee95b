"""Build-or-find llama.cpp's own `llama-server`, the benchmarks' peer.

`ensure_llama_server()` returns `~/.cache/agentport/llama-server/<version>-<hash>/bin/llama-server`,
building it first when missing, from the llama.cpp sources vendored in the source distribution of
the llama-cpp-python we run (its installed version, so both servers run the same llama.cpp);
`<hash>` is a short digest of the cmake options, so every checkout and CI run with the same
options share one build. The sdist is kept under `~/.cache/agentport/sdist/`. The build is
static (no shared libraries to copy), native (`-march=native`, like a pip build of
llama-cpp-python) and offline: the web UI is neither built nor downloaded.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

from agentport.errors import LaunchError

DIST = "llama-cpp-python"

CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",  # the server lives under tools/ in this llama.cpp
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",  # no npm build of the web UI ...
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # ... and no download of a prebuilt one: build offline
    "-DLLAMA_OPENSSL=OFF",  # loopback benchmark: no HTTPS needed
)

# -march=native turns on AMX where the CPU reports it, but a VM may not grant the tile state:
# ggml's AMX matmul then dies with SIGSEGV on its first ldtilecfg (seen on Sapphire Rapids
# guests). Explicit -mno-* flags win over -march=native in GCC and clang. The llama-cpp-python
# wheel we run is built without AMX for the same reason, so both sides stay comparable.
NO_AMX_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def cache_root() -> Path:
    return Path.home() / ".cache" / "agentport"


def pinned_version() -> str:
    """The installed llama-cpp-python's version: the llama.cpp both servers run."""
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError as exc:
        raise LaunchError(f"{DIST} is not installed, so there is no llama.cpp to build") from exc


def cmake_options() -> list[str]:
    """The configure options: `CMAKE_OPTIONS` plus, on x86-64, AMX switched off."""
    options = list(CMAKE_OPTIONS)
    if platform.machine().lower() in {"x86_64", "amd64"}:
        options += [f"-DCMAKE_C_FLAGS={NO_AMX_FLAGS}", f"-DCMAKE_CXX_FLAGS={NO_AMX_FLAGS}"]
    return options


def build_dir(version: str, options: list[str]) -> Path:
    """Where one version built with one set of options lives."""
    digest = hashlib.sha256("\n".join(options).encode()).hexdigest()[:12]
    return cache_root() / "llama-server" / f"{version}-{digest}"


def binary_path() -> Path:
    return build_dir(pinned_version(), cmake_options()) / "bin" / "llama-server"


def ensure_llama_server(jobs: int = 2) -> Path:
    """Path to a `llama-server` binary, built under the user's cache when missing."""
    version, options = pinned_version(), cmake_options()
    work = build_dir(version, options)
    target = work / "bin" / "llama-server"
    if target.is_file():
        return target
    print("building llama-server from the pinned sources (minutes) ...", file=sys.stderr)
    source = llama_cpp_source(unpack_sdist(download_sdist(version), work / "src"))
    binary = build_llama_server(source, work / "build", options, jobs)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, target)
    return target


def download_sdist(version: str) -> Path:
    """The llama-cpp-python sdist tarball, fetched with this interpreter's pip if missing."""
    folder = cache_root() / "sdist"
    tarball = folder / f"llama_cpp_python-{version}.tar.gz"
    if not tarball.is_file():
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        _run([*pip, f"{DIST}=={version}", "-d", str(folder)])
    if not tarball.is_file():
        raise LaunchError(f"pip download did not produce {tarball.name}")
    return tarball


def unpack_sdist(tarball: Path, into: Path) -> Path:
    """Unpack the sdist under ``into`` (once) and return its top folder."""
    top = into / tarball.name.removesuffix(".tar.gz")
    if not (top / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file():
        into.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(into, filter="data")
    return top


def llama_cpp_source(sdist_top: Path) -> Path:
    """The vendored llama.cpp tree inside an unpacked llama-cpp-python sdist."""
    source = sdist_top / "vendor" / "llama.cpp"
    if not (source / "tools" / "server").is_dir():
        raise LaunchError(f"no tools/server in {source}: unexpected llama.cpp layout")
    return source


def build_llama_server(source: Path, build: Path, options: list[str], jobs: int) -> Path:
    """Configure and build the `llama-server` target at low priority; return the binary."""
    _run(_nice(["cmake", "-S", str(source), "-B", str(build), *options]))
    _run(_nice(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)]))
    binary = build / "bin" / "llama-server"
    if not binary.is_file():
        raise LaunchError(f"the build finished but {binary} is missing")
    return binary


def _nice(argv: list[str]) -> list[str]:
    """Run ``argv`` under `nice -n 10` where nice exists: the build must not starve others."""
    return ["nice", "-n", "10", *argv] if shutil.which("nice") else argv


def _run(argv: list[str]) -> None:
    from agentport.config import process_environment

    print("+", " ".join(argv), file=sys.stderr, flush=True)
    env = {**process_environment(), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        subprocess.run(argv, check=True, env=env)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LaunchError(f"{argv[0]} failed: {exc}") from exc
