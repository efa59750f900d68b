"""Where numbers recorded on one machine can be compared bit for bit on another.

XLA:CPU chooses its matmul kernels (YNNPACK) and its vector code by the CPU's widest vector
instruction set, at run time. The same program on the same jaxlib therefore gives different
float bits on an AVX2 and on an AVX-512 CPU: last-place differences that a long run amplifies.
A recording names its platform, jaxlib, backend and that instruction set, and is compared
only where all three match.
"""
import importlib.metadata
import platform
from pathlib import Path

import jax

SIMD_EXTENSIONS = ("avx512f", "avx2", "avx")  # widest first


def simd() -> str:
  """The widest of `SIMD_EXTENSIONS` this CPU has (Linux's /proc/cpuinfo flags), or the
  machine's name (`platform.machine()`) where there is none or no /proc/cpuinfo."""
  try:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
  except OSError:
    return platform.machine()
  flags = next((set(line.split(":", 1)[1].split()) for line in lines
                if line.startswith("flags")), set())
  return next((ext for ext in SIMD_EXTENSIONS if ext in flags), platform.machine())


def platform_key() -> dict[str, str]:
  """What a recording's bits depend on: {"jaxlib", "backend", "simd"}."""
  return {"jaxlib": importlib.metadata.version("jaxlib"), "backend": jax.default_backend(),
          "simd": simd()}
