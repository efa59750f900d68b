"""Settings shared by every test: NumPy rank promotion is an error (as in rlax's tests), so a
silently broadcast [B] against [B, 1] cannot pass."""
import warnings

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
# brax's notice that its own pipelines are unmaintained: mgjax uses its MJX backend.
warnings.filterwarnings("ignore", message="Brax System, piplines and environments")
