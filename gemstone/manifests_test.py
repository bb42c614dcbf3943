"""gemstone.manifests: rows numbered as a person counts lines, columns, and a bad JSON line that says where."""
import json

import pytest

from gemstone import manifests


def test_rows_are_numbered_by_the_files_lines(tmp_path):
    (tmp_path / "m.csv").write_text("\ufeffpath,label\na.jpg,Ruby\nb.jpg,Opal\n")
    (tmp_path / "m.jsonl").write_text('{"path": "a.jpg", "label": "Ruby"}\n\n{"path": "b.jpg", "label": "Opal"}\n')
    assert [(n, row["path"]) for n, row in manifests.rows(tmp_path / "m.csv")] == [(2, "a.jpg"), (3, "b.jpg")]
    assert [(n, row["label"]) for n, row in manifests.rows(tmp_path / "m.jsonl")] == [(1, "Ruby"), (3, "Opal")]
    assert manifests.columns(tmp_path / "m.csv") == manifests.columns(tmp_path / "m.jsonl") == ["path", "label"]


def test_a_line_that_is_not_json_is_json_decode_error_with_its_line_number(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"path": "a.jpg", "label": "Ruby"}\n{path: b.jpg\n')
    with pytest.raises(json.JSONDecodeError) as error:
        list(manifests.rows(tmp_path / "m.jsonl"))
    assert error.value.line_number == 2
