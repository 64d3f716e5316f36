"""The methods table in docs/methods.md is generated from the registry and must be current."""

from pathlib import Path

import pytest

from repmtl import methods as M
from repmtl.methods._table import BEGIN, END, methods_table_markdown, replace_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "methods.md"


def test_docs_contain_the_current_table():
    assert methods_table_markdown() in DOC.read_text(), (
        "docs/methods.md is out of date: run `python -m repmtl.methods._table docs/methods.md`"
    )


def test_one_row_per_registered_method():
    rows = [line for line in methods_table_markdown().splitlines()[2:] if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(M.available())


def test_row_content_comes_from_the_class():
    row = next(line for line in methods_table_markdown().splitlines() if line.startswith("| `nashmtl` "))
    cells = [c.strip() for c in row.strip("|").split(" | ")]
    assert cells[1:6] == ["gradient manipulation", "gramian", "**parameters**, last_layer, representation", "yes", "no"]
    assert "`max_norm=1.0`" in cells[7] and "`update_weights_every=1`" in cells[7]
    mgda_ub = next(line for line in methods_table_markdown().splitlines() if line.startswith("| `mgda-ub` "))
    assert "| **representation** |" in mgda_ub


def test_replace_table_keeps_the_surrounding_text():
    text = f"intro\n{BEGIN}\nold table\n{END}\noutro\n"
    out = replace_table(text, "| new |\n")
    assert out == f"intro\n{BEGIN}\n| new |\n{END}\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        replace_table("no markers here")
