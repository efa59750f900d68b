"""Where numbers recorded on one machine can be compared bit for bit on another.

XLA:CPU chooses its matmul kernels (YNNPACK) and its vector code by the CPU's widest vector
instruction set, at run time. The same program on the same jaxlib therefore gives different
float bits on an AVX2 and on an AVX-512 CPU: last-place differences that a long run amplifies.
A recording names its platform, jaxlib, backend and that instruction set, and is compared
only where all three match.
"""

from mgjax.run import resume

RECORDING_FIELDS = ("jaxlib", "backend", "simd")


def platform_key() -> dict[str, str]:
  """What a recording's bits depend on: the jaxlib, backend and vector-extension fields of
  `mgjax.run.resume.platform_key`."""
  key = resume.platform_key()
  return {k: key[k] for k in RECORDING_FIELDS}
