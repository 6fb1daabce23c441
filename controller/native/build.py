"""Compile the native kernel once per machine and load it with ctypes.

The kernel is C (``rollout.c``) built for the CPU it runs on (``-march=native``: AVX-512 here,
AVX2 or NEON elsewhere) with glibc's vector maths (``-ffast-math`` lets the compiler call the
SIMD sin/cos/tan/exp of libmvec). The shared object is cached under
``$VEHICLE_MPC_CACHE/native`` (default ``~/.cache/vehicle-mpc/native``), keyed by the source,
the compiler's identity, the flags and the CPU's feature flags, so a cache shared between
machines can never hand one CPU code built for another. Building takes about a second; it is
written to a temporary name and renamed, so concurrent first starts are safe.

No compiler, or a failed build, raises ``NativeUnavailable`` with the compiler's message; the
planners then use their torch path (``backend: auto``) or refuse to start (``backend: native``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("rollout.c")
COMPILE_FLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC", "-std=c11")
# Linked without -ffast-math: that would add crtfastmath.o, whose constructor turns on
# flush-to-zero for the whole process (numpy, torch) the moment the library is loaded.
LINK_FLAGS = ("-shared", "-fopenmp")


class NativeUnavailable(RuntimeError):
    """The native kernel cannot be built or loaded on this machine."""


def cache_dir() -> Path:
    root = os.environ.get("VEHICLE_MPC_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "vehicle-mpc"


def _compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise NativeUnavailable("no C compiler found (set CC, or install gcc)")
    return cc


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _build_key(cc: str) -> str:
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(f"C compiler {cc!r} does not run: {e}") from e
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), version.encode(), " ".join(COMPILE_FLAGS + LINK_FLAGS).encode(),
                 platform.machine().encode(), _cpu_flags().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:20]


def build(force: bool = False) -> Path:
    """Path of the kernel's shared object, compiling it if it is not cached."""
    cc = _compiler()
    target = cache_dir() / "native" / f"rollout-{_build_key(cc)}.so"
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    obj = tmp[:-3] + ".o"
    try:
        for command in (
            [cc, *COMPILE_FLAGS, "-c", str(SOURCE), "-o", obj],
            [cc, *LINK_FLAGS, obj, "-o", tmp, "-lm"],
        ):
            result = subprocess.run(command, capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                raise NativeUnavailable(f"building {SOURCE.name} failed:\n{result.stderr.strip()}")
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, obj):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return target


@functools.lru_cache(maxsize=1)
def load() -> ctypes.CDLL:
    """The loaded kernel (built on first use). Import torch first: the kernel then shares its
    OpenMP runtime (the same ``libgomp.so.1``) instead of bringing a second thread pool."""
    import torch  # noqa: F401  (loads torch's libgomp before ours)

    path = build()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise NativeUnavailable(f"cannot load {path}: {e}") from e
    from controller.native.problem import declare

    declare(lib)
    return lib


def available() -> bool:
    try:
        load()
    except NativeUnavailable:
        return False
    return True
