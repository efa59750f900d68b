"""Where numbers recorded on one machine can be compared bit for bit on another.

XLA:CPU chooses its matmul kernels (YNNPACK) and its vector code by the CPU's widest vector
instruction set, at run time. The same program on the same jaxlib therefore gives different
float bits on an AVX2 and on an AVX-512 CPU: last-place differences that a long run amplifies.
The CPU's vendor matters too: XLA compiles for the host CPU, and an Intel and an AMD CPU with
the same widest extension (AVX-512) get different code and different bits. A recording names
its platform (jaxlib, backend, that instruction set and the vendor) and is compared only where
all four match.
"""

from pathlib import Path

from mgjax.run import resume

RECORDING_FIELDS = ("jaxlib", "backend", "simd")


def cpu_vendor(cpuinfo: str | None = None) -> str:
  """The first processor's vendor_id in /proc/cpuinfo (or in `cpuinfo`), e.g. AuthenticAMD
  or GenuineIntel; "unknown" where it does not say."""
  if cpuinfo is None:
    try:
      cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
      cpuinfo = ""
  for line in cpuinfo.splitlines():
    key, _, value = line.partition(":")
    if key.strip() == "vendor_id":
      return value.strip()
  return "unknown"


def platform_key() -> dict[str, str]:
  """What a recording's bits depend on: the jaxlib, backend and vector-extension fields of
  `mgjax.run.resume.platform_key`, and the CPU's vendor."""
  key = resume.platform_key()
  return {**{k: key[k] for k in RECORDING_FIELDS}, "vendor": cpu_vendor()}
