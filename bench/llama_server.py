"""Build-or-find helper for llama.cpp's own ``llama-server``, the decode benchmark's peer.

Owns ``ensure_llama_server()``: it returns ``.cache/llama-server/bin/llama-server`` under the
repository root, building it first when missing, from the llama.cpp sources vendored in the
llama-cpp-python source distribution we pin (so both servers run the same llama.cpp). The
build is static (no shared libraries to copy), native (``-march=native``, like a pip build of
llama-cpp-python) and offline: the web UI is neither built nor downloaded.

Run ``python bench/llama_server.py`` to build (if needed) and print the binary's path.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
SDIST_DIR = CACHE / "sdist"
WORK_DIR = CACHE / "llama-server"
BIN_PATH = WORK_DIR / "bin" / "llama-server"

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


def ensure_llama_server(jobs: int = 2) -> Path:
    """Path to a ``llama-server`` binary, building it under ``.cache/`` when missing."""
    if BIN_PATH.is_file():
        return BIN_PATH
    source = llama_cpp_source(unpack_sdist(download_sdist()))
    binary = build_llama_server(source, WORK_DIR / "build", jobs)
    BIN_PATH.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, BIN_PATH)
    return BIN_PATH


def download_sdist() -> Path:
    """The llama-cpp-python sdist tarball, fetched with this interpreter's pip if missing."""
    name = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    tarball = SDIST_DIR / name
    if not tarball.is_file():
        spec = f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        _run([*pip, spec, "-d", str(SDIST_DIR)])
    if not tarball.is_file():
        raise FileNotFoundError(f"pip download did not produce {tarball.name}")
    return tarball


def unpack_sdist(tarball: Path) -> Path:
    """Unpack the sdist under ``.cache/llama-server/src`` (once) and return its top folder."""
    top = WORK_DIR / "src" / tarball.name.removesuffix(".tar.gz")
    if not (top / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file():
        top.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(top.parent, filter="data")
    return top


def llama_cpp_source(sdist_top: Path) -> Path:
    """The vendored llama.cpp tree inside an unpacked llama-cpp-python sdist."""
    source = sdist_top / "vendor" / "llama.cpp"
    if not (source / "tools" / "server").is_dir():
        raise FileNotFoundError(f"no tools/server in {source}: unexpected llama.cpp layout")
    return source


def cmake_options() -> list[str]:
    """The configure options: ``CMAKE_OPTIONS`` plus, on x86-64, AMX switched off."""
    options = list(CMAKE_OPTIONS)
    if platform.machine().lower() in {"x86_64", "amd64"}:
        options += [f"-DCMAKE_C_FLAGS={NO_AMX_FLAGS}", f"-DCMAKE_CXX_FLAGS={NO_AMX_FLAGS}"]
    return options


def build_llama_server(source: Path, build_dir: Path, jobs: int) -> Path:
    """Configure and build the ``llama-server`` target at low priority; return the binary."""
    _run(_nice(["cmake", "-S", str(source), "-B", str(build_dir), *cmake_options()]))
    _run(_nice(["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs)]))
    binary = build_dir / "bin" / "llama-server"
    if not binary.is_file():
        raise FileNotFoundError(f"build finished but {binary} is missing")
    return binary


def _nice(argv: list[str]) -> list[str]:
    """Run ``argv`` under ``nice -n 10`` where nice exists: the build must not starve others."""
    return ["nice", "-n", "10", *argv] if shutil.which("nice") else argv


def _run(argv: list[str]) -> None:
    print("+", " ".join(argv), file=sys.stderr, flush=True)
    subprocess.run(argv, check=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})


if __name__ == "__main__":
    print(ensure_llama_server())
