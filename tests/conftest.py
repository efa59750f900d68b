"""Settings shared by every test: NumPy rank promotion is an error (as in rlax's tests), so a
silently broadcast [B] against [B, 1] cannot pass; and one persistent XLA compilation cache
for the session, its parallel workers and the command lines they start, so that a program
compiled twice (a paused run and its resumption, one per-device program in two layouts)
compiles once. The cache is a fresh folder per session: no test runs a program compiled
by other code."""

import os
import tempfile
import warnings

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
# brax's notice that its own pipelines are unmaintained: mgjax uses its MJX backend.
warnings.filterwarnings("ignore", message="Brax System, piplines and environments")
# Set by the first process of the session (pytest-xdist's workers inherit it).
_CACHE = os.environ.setdefault("MGJAX_TEST_XLA_CACHE", tempfile.mkdtemp(prefix="mgjax-xla-"))
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE  # for the subprocesses
jax.config.update("jax_compilation_cache_dir", _CACHE)
# run_folder.py is a helper of asserts: pytest explains its failures as in a test file.
pytest.register_assert_rewrite("run_folder")
