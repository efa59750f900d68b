"""What a training run says while it works, so that no long step is silent: the command
lines' progress, and the callback that `mgjax.make_train` takes.

`Progress` prints a line when a step begins (`phase`), and, from a background thread, a
heartbeat line ("  compiling: 20 s") whenever nothing has been printed for `every_s`
seconds while the step runs; compiling does not hold Python's lock, so the heartbeat keeps
time through it. Once training starts (`training`, or the first iteration reported), it
advances a tqdm bar (`bar=True`, as `mgjax train` does, redrawn every few seconds so its
clock moves) or prints an iteration line at most every `every_s` seconds. Called with the
iteration reached, it is the progress callback of `mgjax.make_train`, which calls it from
inside the compiled program after each iteration:

    from mgjax.run.progress import Progress

    progress = Progress(config)
    train = mgjax.make_train(config, progress=progress)
    with progress:  # "compiling ..." and a line every 10 s until the first iteration
      state, metrics = jax.jit(jax.vmap(train))(keys)

Without `progress`, `make_train` builds the same program as before, without a callback.
Only the standard library is imported here (tqdm when a bar is drawn).
"""

import threading
import time
from typing import Any, Callable

import numpy as np

__all__ = ["Progress"]


class Progress:
  """Progress of one training run, in lines (and a bar).

  Args:
    total: the run's iterations, or its `Config` (whose schedule gives them); may be given
      later to `training`.
    enabled: False prints nothing of its own (`log` still passes lines through).
    bar: a tqdm bar during training, instead of iteration lines.
    desc: the bar's (or the iteration lines') label.
    every_s: the longest silence while a step runs, in seconds.
    log: where lines go (`print`, flushed).
  """

  def __init__(
    self,
    total: Any = None,
    *,
    enabled: bool = True,
    bar: bool = False,
    desc: str = "training",
    every_s: float = 10.0,
    log: Callable[[str], None] | None = None,
  ):
    if total is not None and not isinstance(total, (int, np.integer)):
      from mgjax.algorithms import run_schedule

      total = run_schedule(total).num_iterations
    self.total, self.enabled, self.use_bar, self.desc = total, enabled, bar, desc
    self.every_s = every_s
    self._print = log or (lambda line: print(line, flush=True))
    self.bar, self.done, self._initial = None, 0, 0
    self._what: str | None = None
    self._since = self._last = time.monotonic()
    self._train_start: float | None = None
    self._lock = threading.RLock()
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  # --------------------------------------------------------------------------- lines
  def log(self, line: str) -> None:
    """Prints a line (the run's own, as "compiled in ..."), which restarts the silence."""
    with self._lock:
      self._print(line)
      self._last = time.monotonic()

  def phase(self, what: str, say: str | None = None) -> None:
    """A step begins: `what` names it in the heartbeat lines; `say`, if given, is printed
    now."""
    with self._lock:
      self._what, self._since = what, time.monotonic()
    if say is not None:
      self.log(say)

  # ------------------------------------------------------------------------ training
  def training(self, total: int | None = None, initial: int = 0, say: str | None = None) -> None:
    """Training starts (from iteration `initial`, as a resumed run does): the bar, or the
    iteration lines, take over from the heartbeat; `say`, if given, is printed first."""
    if say is not None and self.enabled:
      self.log(say)
    with self._lock:
      if total is not None:
        self.total = int(total)
      self._what, self._train_start = None, time.monotonic()
      self.done = self._initial = initial
      if self.enabled and self.use_bar and self.bar is None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
          total=self.total, desc=self.desc, unit="it", dynamic_ncols=True, initial=initial
        )
      self._last = time.monotonic()

  def __call__(self, iteration) -> None:
    """The iteration reached (vmapped runs report theirs, possibly out of order)."""
    if self._train_start is None:  # make_train's program: its first iteration is done
      since = _duration(time.monotonic() - self._since)
      self.training(say=f"training started after {since}")
    it = int(np.max(np.asarray(iteration)))
    if self.total is not None:
      it = min(it, self.total)
    with self._lock:
      if it <= self.done:
        return
      step, self.done = it - self.done, it
      if self.bar is not None:
        self.bar.update(step)
      elif self.enabled and not self.use_bar:
        now = time.monotonic()
        if now - self._last >= self.every_s or it == self.total:
          self.log(self._iteration_line(now))

  def postfix(self, **values: float) -> None:
    """Values shown beside the bar (the last evaluation's return)."""
    if self.bar is not None:
      with self._lock:
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=True)

  def _iteration_line(self, now: float) -> str:
    elapsed = now - self._train_start
    line = f"  {self.desc}: iteration {self.done}"
    if self.total:
      line += f" of {self.total}"
    line += f", {_duration(elapsed)}"
    done = self.done - self._initial
    if self.total and done > 0 and self.done < self.total:
      line += f", about {_duration(elapsed / done * (self.total - self.done))} left"
    return line

  # -------------------------------------------------------------------------- thread
  def start(self) -> "Progress":
    """Starts the heartbeat (`with progress:` does, and stops it at the end)."""
    if self.enabled and self._thread is None:
      self._stop.clear()
      self._thread = threading.Thread(target=self._beat, name="mgjax-progress", daemon=True)
      self._thread.start()
    return self

  def close(self) -> None:
    """Stops the heartbeat and closes the bar."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    with self._lock:
      if self.bar is not None:
        self.bar.close()
        self.bar = None

  def __enter__(self) -> "Progress":
    if self.enabled and self._what is None and self._train_start is None:
      self.phase("compiling", say="compiling the training program (seconds to minutes) ...")
    return self.start()

  def __exit__(self, *exc) -> None:
    self.close()

  def _beat(self) -> None:
    while not self._stop.wait(min(0.25, self.every_s / 4)):
      with self._lock:
        now = time.monotonic()
        if self._what is not None:
          if now - self._last >= self.every_s:
            self.log(f"  {self._what}: {_duration(now - self._since)}")
        elif self._train_start is not None:
          if self.bar is not None:
            if now - self._last >= self.every_s / 2:
              self.bar.refresh()
              self._last = now
          elif now - self._last >= self.every_s:
            self.log(self._iteration_line(now))


def _duration(seconds: float) -> str:
  """12 s, 3 min 20 s, 1 h 5 min."""
  s = int(round(seconds))
  if s < 60:
    return f"{s} s"
  if s < 3600:
    return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
  return f"{s // 3600} h {s % 3600 // 60} min"
