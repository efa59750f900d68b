"""brax's interactive 3D viewer of an episode as one self-contained HTML file that opens
offline (experiments/evaluate.py --html).

brax's own `brax.io.html` page loads three.js, lil-gui, pako and brax's viewer modules from
CDNs. This page carries all of them inside itself:
- three.js 0.150.1 (its module build and OrbitControls) and lil-gui 0.18.0, the versions
  brax's page asks for, from their npm registry packages, shipped gzipped in
  `mgjax/run/viewer_js/` (sources.json names each file's tarball, path and sha256);
- brax's viewer modules (viewer.js, animator.js, selector.js, system.js) from the installed
  brax package, unchanged but for their relative imports, which become bare specifiers;
- each module as a base64 `data:` URL in the page's import map;
- the system and its trajectory as `brax.io.json.dumps` writes them, as plain JSON in the page
  (no pako).
Import maps need Chromium 89, Firefox 108 or Safari 16.4 or newer.
"""

import base64
import gzip
import hashlib
import html
import json
import re
from importlib import resources
from typing import Any

VENDOR = resources.files("mgjax.run") / "viewer_js"
BRAX_MODULES = ("viewer", "animator", "selector", "system")


def vendored_sources() -> list[dict[str, str]]:
  """sources.json: per vendored file its import specifier, file, npm package, version,
  tarball, integrity, path in the tarball and the sha256 of its (ungzipped) content."""
  return json.loads((VENDOR / "sources.json").read_text())


def vendored_module(source: dict[str, str]) -> str:
  """The JavaScript of one vendored file; ValueError if it is not the registry's file."""
  data = gzip.decompress((VENDOR / source["file"]).read_bytes())
  if hashlib.sha256(data).hexdigest() != source["sha256"]:
    raise ValueError(
      f"file={source['file']!r}: its content is not {source['package']}"
      f"@{source['version']}'s {source['path']} (sha256 differs)"
    )
  return data.decode("utf-8")


def brax_module(name: str) -> str:
  """brax's viewer module `name`.js, its './x.js' imports made 'brax/x.js'."""
  source = (resources.files("brax") / "visualizer" / "js" / f"{name}.js").read_text()
  return re.sub(r"""from\s+(['"])\./([\w-]+\.js)\1""", r"from \1brax/\2\1", source)


def _data_url(js: str) -> str:
  return "data:text/javascript;base64," + base64.b64encode(js.encode("utf-8")).decode("ascii")


def import_map() -> dict[str, dict[str, str]]:
  """The page's import map: every module the viewer imports, as a data: URL."""
  imports = {s["specifier"]: _data_url(vendored_module(s)) for s in vendored_sources()}
  imports.update({f"brax/{name}.js": _data_url(brax_module(name)) for name in BRAX_MODULES})
  return {"imports": imports}


def _script_json(value: Any) -> str:
  """JSON that cannot end the <script> element it sits in."""
  text = value if isinstance(value, str) else json.dumps(value)
  return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ margin: 0; padding: 0; }}
#brax-viewer {{ height: {height}; width: 100vw; overflow: hidden; }}
</style>
<script type="importmap">{import_map}</script>
<script type="application/json" id="brax-system">{system}</script>
</head>
<body>
<div id="brax-viewer"></div>
<script type="module">
import {{Viewer}} from 'brax/viewer.js';
const system = JSON.parse(document.getElementById('brax-system').textContent);
window.viewer = new Viewer(document.getElementById('brax-viewer'), system);
</script>
</body>
</html>
"""


def html_page(system_json: str, title: str = "mgjax episode", height: str = "100vh") -> str:
  """The offline viewer page of `system_json` (`brax.io.json.dumps(sys, states)`)."""
  return PAGE.format(
    title=html.escape(title),
    height=height,
    import_map=_script_json(import_map()),
    system=_script_json(system_json),
  )


def episode_html(sys, pipeline_states, length: int, title: str = "mgjax episode") -> str:
  """The viewer page of one episode: brax `System` `sys` and its pipeline states stacked on a
  leading time axis, of which the first length + 1 are shown (the reset and every step)."""
  import jax
  import numpy as np
  from brax.io import json as brax_json

  states = jax.tree.map(np.asarray, pipeline_states)
  frames = [jax.tree.map(lambda x, t=t: x[t], states) for t in range(length + 1)]
  return html_page(brax_json.dumps(sys, frames), title)
