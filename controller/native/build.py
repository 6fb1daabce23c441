"""Compile the native kernel once per machine and load it with ctypes.

The kernel is C (``rollout.c``) built for the CPU it runs on (``-march=native``: AVX-512,
AVX2 or NEON) with glibc's vector maths (``-ffast-math`` lets the compiler call the
SIMD sin/cos/tan/exp of libmvec). The shared object is cached under
``$VEHICLE_MPC_CACHE/native`` (default ``~/.cache/vehicle-mpc/native``), keyed by the source,
the compiler's identity, the flags and the CPU's feature flags, so a cache shared between
machines can never hand one CPU code built for another. Building takes about a second; it is
written to a temporary name and renamed, so concurrent first starts are safe.

The kernel's state size is a compile-time constant (``-DNX=5`` or ``-DNX=7``, with the
equations generated for it): one shared object per state size, so the 5-field kernel keeps
its fixed-size loops and the 7-field one (``kinematic_dynamic_state``) gets its own.

``VEHICLE_MPC_MARCH`` picks another target (``x86-64-v3``: any AVX2 CPU; the benchmark
times both builds side by side). The source is package data (``importlib.resources``), so an
installed wheel builds it like a checkout.

No source, no compiler, or a failed build, raises ``NativeUnavailable`` with the compiler's message; the
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
from importlib import resources
from pathlib import Path

SOURCE_NAME = "rollout.c"
#: ``-march`` when ``VEHICLE_MPC_MARCH`` is unset: the CPU the kernel runs on.
DEFAULT_MARCH = "native"
#: The portable build the benchmark sets beside the native one (x86-64 with AVX2 and FMA).
PORTABLE_MARCH = "x86-64-v3"
COMPILE_FLAGS = ("-O3", "-ffast-math", "-fopenmp", "-fPIC", "-std=c11")
# Linked without -ffast-math: that would add crtfastmath.o, whose constructor turns on
# flush-to-zero for the whole process (numpy, torch) the moment the library is loaded.
LINK_FLAGS = ("-shared", "-fopenmp")


class NativeUnavailable(RuntimeError):
    """The native kernel cannot be built or loaded on this machine."""


def cache_dir() -> Path:
    root = os.environ.get("VEHICLE_MPC_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "vehicle-mpc"


def default_march() -> str:
    return os.environ.get("VEHICLE_MPC_MARCH") or DEFAULT_MARCH


def source_text() -> bytes:
    """The kernel's C source, from the installed package (not the source tree)."""
    try:
        return resources.files("controller.native").joinpath(SOURCE_NAME).read_bytes()
    except (OSError, ModuleNotFoundError) as e:
        raise NativeUnavailable(f"the kernel source {SOURCE_NAME} is not installed: {e}") from e


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


def _build_key(cc: str, source: bytes, flags: tuple[str, ...]) -> str:
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(f"C compiler {cc!r} does not run: {e}") from e
    h = hashlib.sha256()
    for part in (source, version.encode(), " ".join(flags + LINK_FLAGS).encode(),
                 platform.machine().encode(), _cpu_flags().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:20]


def build(
    march: str | None = None, force: bool = False, nx: int = 5, nominal: str | None = None, substeps: int = 1
) -> Path:
    """Path of the kernel's shared object for ``-march=march``, ``nx`` state fields and the
    nominal model (``codegen.NOMINAL_STATE_DIMS``; default the kinematic one of that size;
    ``substeps``: the single-track one's RK4 sub-steps per step), compiling it if not cached.

    The C is ``rollout.c`` plus the headers ``codegen`` generates from the Python definitions
    (the model's equations, the state cost terms); all are part of the cache key."""
    march = march or default_march()
    cc = _compiler()
    source = source_text()
    try:
        from controller.native.codegen import (
            HEADER_NAME,
            TERMS_HEADER_NAME,
            default_nominal,
            generated_header,
            terms_header,
        )

        nominal = nominal or default_nominal(nx)
        headers = {HEADER_NAME: generated_header(nx, nominal, substeps).encode(),
                   TERMS_HEADER_NAME: terms_header().encode()}
    except Exception as e:  # noqa: BLE001  (any failure to generate means no kernel, not a crash)
        raise NativeUnavailable(f"generating the kernel's equations failed: {e}") from e
    flags = (*COMPILE_FLAGS, f"-march={march}", f"-DNX={nx}")
    key = _build_key(cc, source + b"".join(headers.values()), flags)
    variant = f"{nominal}{substeps}" if nominal == "single_track" else nominal
    target = cache_dir() / "native" / f"rollout-{march}-nx{nx}-{variant}-{key}.so"
    if target.exists() and not force:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=target.parent))
    except OSError as e:
        raise NativeUnavailable(f"cannot write the kernel cache {target.parent}: {e}") from e
    src, obj, lib = work / SOURCE_NAME, work / "rollout.o", work / "rollout.so"
    try:
        src.write_bytes(source)
        for name, text in headers.items():
            (work / name).write_bytes(text)
        for command in (
            [cc, *flags, "-c", str(src), "-o", str(obj)],
            [cc, *LINK_FLAGS, str(obj), "-o", str(lib), "-lm"],
        ):
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=300)
            except (OSError, subprocess.SubprocessError) as e:
                raise NativeUnavailable(f"running {command[0]!r} failed: {e}") from e
            if result.returncode != 0:
                raise NativeUnavailable(f"building {SOURCE_NAME} failed:\n{result.stderr.strip()}")
        os.replace(lib, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


@functools.lru_cache(maxsize=None)
def _load(march: str, nx: int, nominal: str | None, substeps: int) -> ctypes.CDLL:
    import torch  # noqa: F401  (loads torch's libgomp before ours)

    path = build(march, nx=nx, nominal=nominal, substeps=substeps)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise NativeUnavailable(f"cannot load {path}: {e}") from e
    from controller.native.problem import declare

    declare(lib, nx, nominal)
    return lib


def load(march: str | None = None, nx: int = 5, nominal: str | None = None, substeps: int = 1) -> ctypes.CDLL:
    """The loaded kernel for ``-march=march`` (default ``default_march()``), ``nx`` state
    fields (5 or 7) and the nominal model (``build``), built on first use.
    Import torch first: the kernel then shares its OpenMP runtime (the same ``libgomp.so.1``)
    instead of bringing a second thread pool."""
    return _load(march or default_march(), nx, nominal, substeps)
