"""The installed llama.cpp runs on any x86-64 CPU from x86-64-v2 up: its CPU kernels come as
several variants chosen at run time, the libraries everyone loads hold no AVX-512 or AMX code, and
the engine answers on an emulated Haswell (AVX2, no AVX-512) and Nehalem (x86-64-v2) CPU."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.models.llama_backends import HELD_BACK, variant_files

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 builds only")

# AVX-512 registers (zmm, mask registers k1-k7 in EVEX form) and AMX tile instructions.
WIDE = re.compile(r"%zmm|\{%k[1-7]\}|tileloadd|tdpbusd|tdpbf16ps|ldtilecfg")


def wide_instructions(library: Path) -> int:
    objdump = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(library)],
                             capture_output=True, text=True, timeout=300, check=True)
    return sum(1 for line in objdump.stdout.splitlines() if WIDE.search(line))


def test_the_cpu_backend_comes_as_variants_chosen_at_run_time() -> None:
    variants = variant_files()
    assert {"x64", "sse42", "haswell", "skylakex"} <= set(variants), sorted(variants)
    assert set(HELD_BACK) <= set(variants)


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
def test_only_the_avx512_variants_hold_avx512_code() -> None:
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    variants = variant_files()
    shared = [lib / "libllama.so", *sorted(lib.glob("libggml-base.so*"))[:1]]
    for library in [*shared, variants["x64"], variants["sse42"], variants["haswell"]]:
        assert wide_instructions(library) == 0, f"{library.name} holds AVX-512/AMX instructions"
    assert wide_instructions(variants["skylakex"]) > 0  # the check does see AVX-512 where it is


PROBE = """
import sys
from bastion.models.llama_backends import load_cpu_backend
variant = load_cpu_backend().variant
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
out = llm("The capital of France is", max_tokens=3, temperature=0.0)
print(variant, "|", out["choices"][0]["text"].strip())
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user is not installed")
@pytest.mark.parametrize(("cpu", "expected"), [("Haswell", "haswell"), ("Nehalem", "sse42")])
def test_answers_on_an_older_cpu_under_emulation(cpu: str, expected: str, smollm2_path: Path) -> None:
    run = subprocess.run(["qemu-x86_64", "-cpu", cpu, sys.executable, "-c", PROBE, str(smollm2_path)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    variant, _, text = run.stdout.strip().splitlines()[-1].partition(" | ")
    assert variant == expected
    assert "Paris" in text
