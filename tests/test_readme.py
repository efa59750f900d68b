"""The README's library examples run as written (the second continues the first)."""

import pathlib
import re


def test_readme_example_runs(capsys):
  text = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
  blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "model_gradient_loss" in b]
  assert len(blocks) == 2, "README: one example of model_gradient_loss, one of the actor's"
  namespace = {}
  for block in blocks:
    exec(compile(block, "README.md", "exec"), namespace)
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 4 and lines[-1].startswith("actor ")
  for line in lines:
    cosine = float(line.split()[1])
    assert -1.0 <= cosine <= 1.0
