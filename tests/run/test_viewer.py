"""The offline 3D viewer page (mgjax/run/viewer.py): the vendored npm files are the registry's,
every module the viewer imports is inside the page, the embedded trajectory cannot end its
script element, and a real headless browser draws a hopper from the page without a network or
a script error. (experiments/evaluate.py --html on a trained run: tests/cli/test_cli.py.)"""

import gzip
import json
import re
import shutil

import browser
import mujoco
import numpy as np
import pytest
from brax.base import Transform

from mgjax.run import viewer

SPECIFIER = re.compile(r"""(?:from|import)\s*['"]([^'"]+)['"]""")


def _decode(data_url: str) -> str:
  import base64

  prefix = "data:text/javascript;base64,"
  assert data_url.startswith(prefix)
  return base64.b64decode(data_url[len(prefix) :]).decode("utf-8")


def test_vendored_files_are_the_npm_registry_files():
  sources = viewer.vendored_sources()
  assert {s["specifier"] for s in sources} == {
    "three",
    "three/addons/controls/OrbitControls.js",
    "lilgui",
  }
  for s in sources:
    assert s["tarball"] == (
      f"https://registry.npmjs.org/{s['package']}/-/{s['package']}-{s['version']}.tgz"
    )
    assert len(viewer.vendored_module(s)) > 1000


def test_a_changed_vendored_file_is_refused(tmp_path, monkeypatch):
  for f in viewer.VENDOR.iterdir():
    shutil.copy(f, tmp_path / f.name)
  source = viewer.vendored_sources()[2]
  data = gzip.decompress((tmp_path / source["file"]).read_bytes())
  (tmp_path / source["file"]).write_bytes(gzip.compress(data + b"\n//"))
  monkeypatch.setattr(viewer, "VENDOR", tmp_path)
  with pytest.raises(ValueError, match=re.escape(source["file"])):
    viewer.vendored_module(source)


def test_every_import_of_the_page_resolves_inside_it():
  imports = viewer.import_map()["imports"]
  assert set(imports) >= {f"brax/{m}.js" for m in viewer.BRAX_MODULES}
  wanted = set()
  for url in imports.values():
    wanted |= set(SPECIFIER.findall(_decode(url)))
  assert "brax/animator.js" in wanted and not any(w.startswith(".") for w in wanted)
  assert wanted <= set(imports), wanted - set(imports)


def test_the_trajectory_cannot_end_its_script_element():
  system = json.dumps({"name": "</script><script>alert(1)</script>", "x": [1.5, "&"]})
  page = viewer.html_page(system)
  assert page.count("</script>") == 3  # the import map, the trajectory, the module
  embedded = re.search(r'id="brax-system">(.*?)</script>', page, re.S)[1]
  assert json.loads(embedded) == json.loads(system)


def _hopper_frames(n: int):
  """A hopper's brax System and n link poses (free fall from a tilted start) from MuJoCo
  itself: what brax.io.json.dumps reads of pipeline states is `x`."""
  from brax import envs as brax_envs

  sys = brax_envs.get_environment("hopper", backend="mjx").sys
  model = sys.mj_model
  data = mujoco.MjData(model)
  data.qpos[2] = 0.3
  frames = []
  for _ in range(n):
    mujoco.mj_step(model, data)
    frames.append(
      type("S", (), {"x": Transform(pos=data.xpos[1:].copy(), rot=data.xquat[1:].copy())})()
    )
  return sys, frames


def test_a_headless_browser_draws_the_page_offline_without_errors(tmp_path):
  from brax.io import json as brax_json

  sys, frames = _hopper_frames(20)
  page = tmp_path / "hopper.html"
  page.write_text(viewer.html_page(brax_json.dumps(sys, frames), "hopper"))
  seen = browser.visit(page, "window.viewer !== undefined")
  assert seen.errors == [] and seen.requests == []
  assert seen.screenshot.shape == (480, 640, 3)
  # Floor, sky, the hopper and the controls: far from a blank page.
  assert seen.screenshot.std() > 0.05
  assert len(np.unique(seen.screenshot.reshape(-1, 3), axis=0)) > 100
