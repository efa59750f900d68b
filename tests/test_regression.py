"""Fixed-seed regression: every metric of a short run of each algorithm, bit for bit.

The values in data/regression_metrics_VENDOR_SIMD.json were recorded on CPU before the package
was restructured around `mgjax.algorithms`; a refactor must reproduce them exactly. XLA's float
arithmetic differs between jaxlib versions, backends, the CPU's vector instruction sets and its
vendor (`recorded.platform_key`), so each file names its platform and the test compares against
the file of this machine's platform, or skips where there is none:
- `authenticamd_avx2`: recorded before the restructuring;
- `authenticamd_avx512f`: recorded later, from a commit whose numbers reproduced `_avx2` bit for
  bit on an AVX2 machine (no numbers had changed since), on an AVX-512 machine;
- `genuineintel_avx512f`: recorded on an Intel Xeon with AVX-512 from the commit before the MG
  fit's step metrics (`mgjax.models.fitting.MG_FIT_METRICS`) and the held-out alignment were
  added; those metrics are recorded in this file only.
A metric added since a recording is not in it and is compared where a recording has it.

Record this platform's file (only after a deliberate change of numbers, then on every
platform):
    python tests/test_regression.py --record
"""

import functools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny
from paths import DATA
from recorded import platform_key

from mgjax import make_config, make_train
from mgjax.algorithms import COLUMN_ALIASES

SEEDS = (0, 3)

_PPO_FAMILY = dict(tiny.PPO_FAMILY, real_grad_ema=0.5)
CONFIGS = {
  "mg": dict(_PPO_FAMILY, algo="mg"),
  "mle": dict(_PPO_FAMILY, algo="mle"),
  "ppo": dict(_PPO_FAMILY, algo="ppo"),
  "mbpo": dict(tiny.SAC_FAMILY, algo="mbpo"),
  "mg-sac": dict(tiny.SAC_FAMILY, algo="mg-sac"),
}


def run_metrics(algo: str) -> dict[str, np.ndarray]:
  """Every metric leaf of `make_train` for SEEDS, flattened to {"iterations/name": array}."""
  train = make_train(make_config(**CONFIGS[algo]))
  keys = jnp.stack([jax.random.key(s) for s in SEEDS])
  _, metrics = jax.jit(jax.vmap(train))(keys)
  flat = {}
  for group, values in metrics.items():
    for name, v in values.items():
      flat[f"{group}/{name}"] = np.asarray(v)
  return flat


def _bits(x: np.ndarray) -> list[int]:
  return x.astype(x.dtype.newbyteorder("<")).view(f"<u{x.dtype.itemsize}").ravel().tolist()


def record() -> None:
  out = {"platform": platform_key(), "seeds": list(SEEDS), "algos": {}}
  for algo in CONFIGS:
    out["algos"][algo] = {
      name: {
        "dtype": str(v.dtype),
        "shape": list(v.shape),
        "bits": _bits(v),
        "values": v.ravel().tolist(),
      }
      for name, v in sorted(run_metrics(algo).items())
    }
    print(algo, "recorded")
  vendor = out["platform"]["vendor"].lower()
  path = DATA / f"regression_metrics_{vendor}_{out['platform']['simd']}.json"
  path.write_text(json.dumps(out, indent=1) + "\n")
  print("wrote", path)


@functools.cache
def _recordings() -> list[dict]:
  return [json.loads(p.read_text()) for p in sorted(DATA.glob("regression_metrics_*.json"))]


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(CONFIGS))
def test_every_metric_equals_the_recording(algo):
  here = platform_key()
  recorded = next((r for r in _recordings() if r["platform"] == here), None)
  if recorded is None:
    pytest.skip(f"recorded on {[r['platform'] for r in _recordings()]}, this is {here}")
  expected = recorded["algos"][algo]
  got = run_metrics(algo)
  # A metric renamed since the recording is compared under its new name.
  renamed = lambda name: "/".join(COLUMN_ALIASES.get(p, p) for p in name.split("/"))
  missing = sorted(set(map(renamed, expected)) - set(got))
  assert not missing, missing
  for name, want in expected.items():
    v = got[renamed(name)]
    assert (str(v.dtype), list(v.shape)) == (want["dtype"], want["shape"]), name
    assert _bits(v) == want["bits"], (name, v.ravel().tolist(), want["values"])


if __name__ == "__main__":
  if sys.argv[1:] == ["--record"]:
    record()
