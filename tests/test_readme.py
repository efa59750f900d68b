"""The README's library example runs as written."""
import pathlib
import re


def test_readme_example_runs(capsys):
  text = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
  blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S)
            if "model_gradient_loss" in b]
  assert len(blocks) == 1, "README should have one example reusing model_gradient_loss"
  exec(compile(blocks[0], "README.md", "exec"), {})
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 3
  for line in lines:
    cosine = float(line.split()[1])
    assert -1.0 <= cosine <= 1.0
