"""The Python examples of the README and docs/ run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


DOCS = [README, *sorted((README.parent / "docs").glob("*.md"))]


def test_readme_has_a_python_example():
    assert re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("document", DOCS, ids=lambda p: p.name)
def test_python_examples_run(document):
    for block in re.findall(r"```python\n(.*?)```", document.read_text(), flags=re.DOTALL):
        exec(compile(block, str(document), "exec"), {})  # noqa: S102 - the README's own examples


def test_readme_test_command_is_the_ci_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python -m pytest\n" in README.read_text()
    assert "\npython -m pytest ||" in ci
