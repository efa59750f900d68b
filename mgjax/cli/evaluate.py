"""Evaluate a trained run's policy, and render an episode to a video or a picture.

  mgjax evaluate RUN_DIR                        # every seed, 10 episodes
  mgjax evaluate RUN_DIR --seed 0 --stochastic --episodes 50
  mgjax evaluate RUN_DIR --video hopper.mp4     # the first seed, one episode
  mgjax evaluate RUN_DIR --html hopper.html     # the same episode in 3D

RUN_DIR is a folder that `mgjax train` wrote (it prints these commands with its path).

The policy comes from the run folder's checkpoint (`mgjax.load_policy`): deterministic (the
mean action, as the evaluations in metrics.csv) unless --stochastic. Each seed plays
--episodes fresh episodes of at most the run's episode length, all seeds in one jitted,
vmapped program. Writes RUN_DIR/eval.json (or --out): per seed the returns and lengths of
every episode and their mean and standard deviation. An eval.json already there is replaced,
and the command says so (give --out to keep it).

--video FILE.mp4 renders one episode (--video-seed, default the first seed) with MuJoCo's
own renderer, headless (`MUJOCO_GL=egl` by default; `osmesa` where EGL is missing), and
encodes it with the ffmpeg binary that ships in the imageio-ffmpeg package, in real time.
--frame FILE.png writes the episode's middle frame as a picture. --html FILE.html writes
brax's interactive 3D viewer of that episode as one self-contained page that opens offline
(three.js and lil-gui from their npm packages, shipped with mgjax, and brax's viewer modules
are inside the page).

Compiled programs are kept in ~/.cache/mgjax/xla for the next launch (--no-compile-cache;
mgjax.run.compile_cache).
"""

import json
import os
import sys
import warnings
from pathlib import Path

from mgjax import extras

warnings.filterwarnings("ignore", message="Brax System, piplines and environments")


def _parse(argv, launcher):
  """The parser and the arguments of `argv`, checked (a bad one exits with the parser's
  error)."""
  from mgjax.cli import command, describe
  from mgjax.run.cli import Parser

  prog = None if launcher is None else command("evaluate", launcher)
  p = Parser(prog=prog, description=describe(__doc__, launcher))
  _add_evaluation_flags(p)
  _add_showing_flags(p)
  from mgjax.run import cli, compile_cache

  compile_cache.add_flag(p)
  cli.add_import_flag(p)
  cli.import_modules(p, argv)  # a run of an algorithm or env registered outside mgjax
  args = p.parse_args(argv)
  _check(p, args)
  return p, args


def _add_evaluation_flags(p) -> None:
  """RUN_DIR and the flags of the evaluation: which seeds, how many episodes, where to."""
  p.add_argument("run_dir", help="a run folder (or one setting's folder of a sweep)")
  p.add_argument(
    "--seed",
    type=int,
    action="append",
    default=None,
    help="evaluate this seed of the run (repeatable; default every seed)",
  )
  p.add_argument("--episodes", type=int, default=10, help="episodes per seed (default 10)")
  p.add_argument(
    "--stochastic",
    action="store_true",
    help="sample actions from the policy instead of taking its mean",
  )
  p.add_argument("--key", type=int, default=0, help="PRNG seed of the episodes (default 0)")
  p.add_argument(
    "--out",
    default=None,
    help="where eval.json goes (default RUN_DIR/eval.json; one already there is replaced, "
    "and the command says so)",
  )


def _add_showing_flags(p) -> None:
  """The flags that show an episode: the video, the picture, the 3D page, and their size."""
  p.add_argument(
    "--video",
    default=None,
    metavar="FILE.mp4",
    help="render one episode of --video-seed to this mp4",
  )
  p.add_argument(
    "--frame",
    default=None,
    metavar="FILE.png",
    help="write the middle frame of that episode as a picture",
  )
  p.add_argument(
    "--html",
    default=None,
    metavar="FILE.html",
    help="write brax's 3D viewer of that episode, offline, to this page",
  )
  p.add_argument(
    "--video-seed",
    type=int,
    default=None,
    help="whose episode --video, --frame and --html show: one of the "
    "evaluated seeds (default the first)",
  )
  p.add_argument("--width", type=int, default=480, help="video width in pixels")
  p.add_argument("--height", type=int, default=360, help="video height in pixels")


def _check(p, args) -> None:
  """The parser's error for an argument out of range, a file of the wrong kind, or a
  missing extra."""
  if args.episodes < 1:
    p.error(f"episodes={args.episodes}: must be positive")
  if args.video is not None and not args.video.endswith(".mp4"):
    p.error(f"video={args.video!r}: must name an .mp4 file")
  if args.frame is not None and not args.frame.endswith(".png"):
    p.error(f"frame={args.frame!r}: must name a .png file")
  if args.html is not None and not args.html.endswith(".html"):
    p.error(f"html={args.html!r}: must name an .html file")
  for name in ("width", "height"):
    if not 16 <= getattr(args, name) <= 4096:
      p.error(f"{name}={getattr(args, name)}: must be between 16 and 4096 pixels")
  if args.video:  # the encoder and the picture writer are the viz extra's
    extras.require("imageio_ffmpeg", "--video", p)
  if args.frame:
    extras.require("matplotlib", "--frame", p)


def _replacing(out: Path) -> str:
  """What `wrote OUT` adds where OUT replaced an earlier eval.json: which one it was."""
  if not out.exists():
    return ""
  try:
    old = json.loads(out.read_text())
    kind = "deterministic" if old["deterministic"] else "stochastic"
    return f" (replaced the earlier one, of {old['episodes']} {kind} episode(s) per seed)"
  except (OSError, ValueError, KeyError, TypeError):
    return " (replaced the file that was there)"


def main(argv=None, launcher: str | None = None) -> int:
  """The command: `launcher` names it in messages (`mgjax.cli.command`; None:
  experiments/evaluate.py)."""
  os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported
  argv = sys.argv[1:] if argv is None else list(argv)
  if hasattr(sys.stdout, "reconfigure"):
    sys.stdout.reconfigure(line_buffering=True)
  from mgjax.run.progress import Progress

  # A line every 10 s while a step runs (loading, compiling and playing, rendering).
  shown = Progress()
  shown.phase("loading the run")
  with shown:
    return _evaluate(argv, launcher, shown)


def _evaluate(argv, launcher, shown) -> int:
  """The command's work, its steps through `shown`: the run loaded, its seeds evaluated into
  eval.json, and the episode shown where asked."""
  p, args = _parse(argv, launcher)
  from mgjax.run import compile_cache, evaluation

  try:  # before the first compile
    compile_cache.enable(not args.no_compile_cache)
  except compile_cache.CacheError as e:
    p.error(str(e))
  from mgjax.run.outputs import OutputError

  try:
    run = evaluation.load_run(args.run_dir, args.seed)
    seed = run.seeds[0] if args.video_seed is None else args.video_seed
    show = args.video or args.frame or args.html
    if show:  # what cannot be shown stops before anything runs
      if seed not in run.seeds:
        p.error(f"video-seed={seed}: not among the evaluated seeds {run.seeds}")
      evaluation.mujoco_model(run.trainer.setup.env)
    result = _evaluate_seeds(run, args, shown)
    if show:
      _show(run, seed, f"{result['algo']} on {result['env']}", args, shown)
  except (OutputError, OSError) as e:
    p.error(str(e).splitlines()[0])
  return 0


def _evaluate_seeds(run, args, shown) -> dict:
  """--episodes episodes of each seed, written to eval.json and summed up per seed -> the
  result that eval.json holds."""
  from mgjax.run import evaluation

  log = shown.log
  shown.phase(f"compiling and playing {args.episodes} episode(s) per seed")
  result = evaluation.evaluate_run(
    run, episodes=args.episodes, deterministic=not args.stochastic, key=args.key
  )
  out = Path(args.out) if args.out else Path(args.run_dir) / "eval.json"
  replacing = _replacing(out)
  out.write_text(json.dumps(result, indent=1) + "\n")
  log(
    f"{result['algo']} on {result['env']}, {args.episodes} "
    f"{'stochastic' if args.stochastic else 'deterministic'} episode(s) per seed:"
  )
  for s, r in result["seeds"].items():
    log(
      f"  seed {s}: return {r['return_mean']:.1f} ± {r['return_std']:.1f}, "
      f"length {r['length_mean']:.0f}"
    )
  log(f"wrote {out}{replacing}")
  return result


def _show(run, seed: int, title: str, args, shown) -> None:
  """Plays `seed`'s episode once more and writes what --video, --frame and --html ask for;
  `title` ("ALGO on ENV") heads the 3D viewer."""
  from mgjax.run import evaluation

  shown.phase("playing the episode to show")
  episode = evaluation.play_episode(run, seed, deterministic=not args.stochastic, key=args.key)
  about = f"seed {seed}, return {episode.ret:.6g}, {episode.length} steps"
  if args.video or args.frame:
    _render(episode, about, args, shown)
  if args.html:
    shown.phase("writing the 3D viewer")
    size = evaluation.write_html(args.html, episode, f"{title}, {about}")
    shown.log(f"wrote {args.html} ({size / 1e6:.1f} MB, {about})")


def _render(episode, about: str, args, shown) -> None:
  """The episode's frames, rendered and written as --video and --frame ask; `about` (its
  seed, return and length) goes into the lines that say so."""
  from mgjax.run import evaluation

  shown.phase(f"rendering {episode.length + 1} frames")
  frames = evaluation.render_frames(episode, args.width, args.height)
  fps = 1.0 / float(episode.env.env.dt)
  if args.video:
    shown.phase("encoding the video")
    evaluation.write_mp4(args.video, frames, fps)
    shown.log(f"wrote {args.video} ({len(frames)} frames at {fps:g} fps, {about})")
  if args.frame:
    plt = extras.pyplot("--frame")
    Path(args.frame).parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(args.frame, frames[len(frames) // 2])
    shown.log(f"wrote {args.frame} (frame {len(frames) // 2} of {len(frames)}, {about})")
