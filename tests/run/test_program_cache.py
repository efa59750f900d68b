"""The runner's traced programs kept on disk (`mgjax.run.program_cache`): a program loaded
from its exported form gives the jitted function's outputs bit for bit, a torn entry is
traced again, the key moves with everything that shapes the trace, and code from outside
mgjax is never kept. The command-line round trip (a launch that loads them gives the
numbers of one that traced them) is in test_compile_cache.py."""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgjax import envs
from mgjax.algorithms import get_algorithm, make_config
from mgjax.run import compile_cache, program_cache


class Carry(NamedTuple):
  key: jax.Array
  x: jax.Array


def _step(carry: Carry, scale):
  key, sub = jax.random.split(carry.key)
  x = carry.x * scale + jax.random.normal(sub, carry.x.shape)
  return Carry(key, x), {"mean": jnp.mean(x), "parts": (x[0], jnp.sum(x))}


def _args():
  carry = Carry(jax.random.key(3), jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32))
  return carry, jnp.float32(0.5)


def _same(a, b):
  unwrap = lambda t: jax.tree.map(
    lambda v: jax.random.key_data(v) if jnp.issubdtype(v.dtype, jax.dtypes.prng_key) else v, t
  )
  chex.assert_trees_all_equal(unwrap(a), unwrap(b))
  assert jax.tree.structure(a) == jax.tree.structure(b)


def test_a_loaded_program_gives_the_jitted_functions_outputs(tmp_path):
  args = _args()
  direct = jax.jit(_step)(*args)
  first = program_cache.compile(_step, args, name="step", folder=tmp_path, key="k")
  assert not first.loaded and sorted(p.name for p in tmp_path.iterdir()) == [
    "k.stablehlo",
    "k.tree",
  ]
  second = program_cache.compile(_step, args, name="step", folder=tmp_path, key="k")
  assert second.loaded
  _same(first(*args), direct)
  _same(second(*args), direct)
  assert second.memory_analysis() is not None
  # Without a folder: traced every time, nothing written.
  assert not program_cache.compile(_step, args, name="step", folder=None, key="k").loaded


def test_a_torn_entry_is_traced_again_and_replaced(tmp_path):
  args = _args()
  (tmp_path / "k.stablehlo").write_bytes(b"not a program")
  (tmp_path / "k.tree").write_bytes(b"not a tree")
  again = program_cache.compile(_step, args, name="step", folder=tmp_path, key="k")
  assert not again.loaded
  _same(again(*args), jax.jit(_step)(*args))
  assert program_cache.compile(_step, args, name="step", folder=tmp_path, key="k").loaded
  # A tree without its program (a launch stopped between the two writes) is no entry.
  (tmp_path / "k.stablehlo").unlink()
  assert not program_cache.compile(_step, args, name="step", folder=tmp_path, key="k").loaded


def test_the_key_moves_with_what_shapes_the_trace(monkeypatch):
  config = make_config(env="pointmass")
  args = _args()
  key = program_cache.program_key("run_chunk", config, args, None)
  assert key == program_cache.program_key("run_chunk", config, args, None)
  others = [
    program_cache.program_key("init", config, args, None),
    program_cache.program_key("run_chunk", make_config(env="pointmass", mg_steps=2), args, None),
    program_cache.program_key("run_chunk", config, (args[0], jnp.zeros(2)), None),  # shape
    program_cache.program_key("run_chunk", config, (args[0], jnp.int32(1)), None),  # dtype
    program_cache.program_key("run_chunk", config, (args,), None),  # tree
    program_cache.program_key("run_chunk", config, args, "another sharding"),
  ]
  monkeypatch.setattr(program_cache, "source_digest", lambda: "edited")
  others.append(program_cache.program_key("run_chunk", config, args, None))  # mgjax's source
  assert len({key, *others}) == len(others) + 1


class _Static:
  """Static pytree data that prints with its address (as MJX's wrapped arrays do)."""


@jax.tree_util.register_pytree_node_class
class _Node:
  def __init__(self, x, static):
    self.x, self.static = x, static

  def tree_flatten(self):
    return (self.x,), self.static

  @classmethod
  def tree_unflatten(cls, static, children):
    return cls(children[0], static)


def test_the_key_ignores_addresses_in_static_data():
  config = make_config(env="pointmass")
  one, two = (_Node(jnp.zeros(2), _Static()) for _ in range(2))
  assert " at 0x" in str(jax.tree.structure(one))
  assert program_cache.program_key("p", config, (one,), None) == program_cache.program_key(
    "p", config, (two,), None
  )


def test_source_digest_reads_every_module_of_the_package():
  digest = program_cache.source_digest()
  assert len(digest) == 64 and digest == program_cache.source_digest()


def _outside_iteration(su, state):  # an algorithm's function defined outside mgjax
  return get_algorithm("ppo").iteration(su, state)


def test_only_mgjax_code_on_known_envs_is_kept(tmp_path, monkeypatch):
  config, ppo = make_config(env="pointmass", algo="ppo"), get_algorithm("ppo")
  monkeypatch.setattr(compile_cache, "_programs", None)
  assert program_cache.folder_for(config, ppo, envs.ENV_NAMES) is None  # no cache enabled
  monkeypatch.setattr(compile_cache, "_programs", tmp_path / "programs")
  assert program_cache.folder_for(config, ppo, envs.ENV_NAMES) == tmp_path / "programs"
  outside = ppo._replace(iteration=_outside_iteration)
  assert program_cache.folder_for(config, outside, envs.ENV_NAMES) is None
  assert program_cache.folder_for(config, ppo, ("hopper",)) is None  # an env not known


@pytest.mark.parametrize("enabled", [True, False])
def test_enable_sets_the_programs_folder(tmp_path, enabled, monkeypatch):
  before = {
    n: getattr(jax.config, n)
    for n in (
      "jax_enable_compilation_cache",
      "jax_compilation_cache_dir",
      "jax_persistent_cache_min_compile_time_secs",
      "jax_persistent_cache_min_entry_size_bytes",
    )
  }
  monkeypatch.setattr(compile_cache, "_programs", None)
  try:
    path = compile_cache.enable(enabled, environ={"MGJAX_COMPILE_CACHE": str(tmp_path)})
    expected = path / "programs" if enabled else None
    assert compile_cache.programs() == expected
  finally:
    for n, v in before.items():
      jax.config.update(n, v)
  np.testing.assert_equal(enabled, path is not None)


def test_the_states_shapes_are_kept_and_read_without_tracing(tmp_path):
  traces = []

  def fresh():  # a new function each time, so that JAX's own trace cache is not hit
    def init():
      traces.append(1)
      return {"key": jax.random.split(jax.random.key(0), 3), "x": jnp.zeros((2, 3))}

    return init

  shapes = lambda config, folder: program_cache.abstract(
    fresh(), name="state", config=config, folder=folder, key_args=(2,)
  )
  first, second = shapes({"a": 1}, tmp_path), shapes({"a": 1}, tmp_path)
  assert len(traces) == 1 and first == second == jax.eval_shape(fresh())
  shapes({"a": 2}, tmp_path), shapes({"a": 1}, None)
  assert len(traces) == 4  # the eval_shape above, another config, and no folder: traced
