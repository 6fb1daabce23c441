"""The generated code of the residual network's hot loop, read from the compiled kernel.

A kernel tuned on one CPU ran 3x slower on another because of one store-forwarding stall
(issue 11): the dense layer's inner loop copied the input row through the stack. Speed on a
CPU this machine lacks cannot be timed here, but its code can be read: each target is
compiled (compiling for AVX-512 needs no AVX-512 CPU) and the inner loop of ``dense`` --
inlined into ``residual_forward`` -- must be what rollout.c's comment above ``dense`` says:
the row loaded once into registers, one FMA per accumulator and hardware vector, and no store
and no stack operand inside the loop.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess

import pytest

from controller.native import build as native_build
from controller.native.problem import LANES

#: -march targets and the float width of their vectors (zmm 16, ymm 8).
TARGETS = {"x86-64-v3": 8, "x86-64-v4": 16, "znver3": 8, "sapphirerapids": 16}
#: rollout.c's LANES (samples per row, one FMA per hardware vector of them) times ACC_COLUMNS
#: (output columns accumulated together, 8 / VECS): eight FMAs per input row on every target.
FMAS_PER_ROW = 8

pytestmark = [
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 targets"),
    pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)"),
    pytest.mark.skipif(not any(map(shutil.which, ("cc", "gcc", "clang"))), reason="needs a C compiler"),
]

_LINE = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")


def residual_forward(march: str) -> list[tuple[int, str, str]]:
    try:
        path = native_build.build(march)
    except native_build.NativeUnavailable as e:
        if "march" in str(e) and ("bad value" in str(e) or "unknown" in str(e).lower()):
            pytest.skip(f"this compiler does not know -march={march}: {e}")
        raise
    text = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(path)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    body = text.split("<residual_forward>:", 1)[1].split("\n\n", 1)[0]
    return [(int(m[1], 16), m[2], m[3]) for m in map(_LINE.match, body.splitlines()) if m]


def inner_loop(code: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """The innermost loop holding the first vector FMA: from its backward branch's target to it."""
    first_fma = next(i for i, (_, op, _) in enumerate(code) if op == "vfmadd231ps")
    for addr, op, args in code[first_fma:]:
        target = re.match(r"([0-9a-f]+) <", args)
        if op.startswith("j") and target and int(target[1], 16) <= code[first_fma][0]:
            start = int(target[1], 16)
            return [ins for ins in code if start <= ins[0] <= addr]
    raise AssertionError("no loop around the first FMA")


@pytest.mark.slow
@pytest.mark.parametrize("march", list(TARGETS))
def test_dense_inner_loop_keeps_the_row_and_accumulators_in_registers(march: str) -> None:
    width = TARGETS[march]
    register = {16: "%zmm", 8: "%ymm"}[width]
    loop = inner_loop(residual_forward(march))
    listing = "\n".join(f"{a:x}: {op} {args}" for a, op, args in loop)
    fmas = [args for _, op, args in loop if op == "vfmadd231ps"]
    vecs = LANES // width
    # Every accumulator of the block is updated once per input row, in the target's width.
    assert len(fmas) == FMAS_PER_ROW, listing
    assert all(args.endswith(tuple(f"{register}{n}" for n in range(32))) for args in fmas), listing
    # The row: VECS loads from memory into registers, none through the stack.
    row_loads = [args for _, op, args in loop if op == "vmovups" and args.startswith(("(", "-", "0x"))]
    assert len(row_loads) == vecs, listing
    # No store of any kind, no stack operand (a spill or a copy of the row through memory).
    assert not any("%rsp" in args or "%rbp" in args for _, _, args in loop), listing
    stores = [args for _, op, args in loop if op.startswith(("vmov", "mov")) and args.endswith(")")]
    assert not stores, listing
