"""Where numbers recorded on one machine can be compared bit for bit on another.

XLA:CPU chooses its matmul kernels (YNNPACK) and its vector code by the CPU's widest vector
instruction set, at run time. The same program on the same jaxlib therefore gives different
float bits on an AVX2 and on an AVX-512 CPU: last-place differences that a long run amplifies.
A recording names its platform, jaxlib, backend and that instruction set, and is compared
only where all three match.
"""
import importlib.metadata

import jax

from mgjax.run.outputs import host


def platform_key() -> dict[str, str]:
  """What a recording's bits depend on: {"jaxlib", "backend", "simd"} (`outputs.host`)."""
  return {"jaxlib": importlib.metadata.version("jaxlib"), "backend": jax.default_backend(),
          "simd": host()["simd"]}
