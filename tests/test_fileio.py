"""Atomic writes and the JSONL logs a resumed run rewinds."""

import json
import os
import stat

import pytest

from ohemcli.errors import UserError
from ohemcli.fileio import (
    append_jsonl,
    atomic_write,
    atomic_write_text,
    current_umask,
    load_yaml,
    read_json,
    truncate_jsonl,
)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def crash(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_truncate_jsonl_drops_lines_past_the_checkpoint_and_torn_lines(tmp_path):
    log = tmp_path / "metrics.jsonl"
    for it in (10, 20, 30):
        append_jsonl(log, {"iter": it, "loss": 1.0})
    with open(log, "a") as f:
        f.write('{"iter": 40, "lo')  # torn by a crash
    truncate_jsonl(log, 20)
    assert [json.loads(line)["iter"] for line in log.read_text().splitlines()] == [10, 20]


def test_yaml_aliases_within_the_bound_load(tmp_path):
    from ohemcli.fileio import load_yaml

    assert load_yaml("a: &x [1, 2]\nb: *x\n", "f.yaml") == {"a": [1, 2], "b": [1, 2]}
    assert load_yaml("", "f.yaml") is None


def test_a_yaml_alias_bomb_is_refused_in_one_line_without_expanding_it():
    from ohemcli.errors import UserError
    from ohemcli.fileio import MAX_YAML_NODES, load_yaml

    # Each level holds 9 aliases of the one before: 9**12 nodes when followed, 120 in the file.
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 12)]
    with pytest.raises(UserError) as info:
        load_yaml("\n".join(lines), "bomb.yaml")
    assert str(info.value).startswith("bomb.yaml: ") and str(MAX_YAML_NODES) in str(info.value)


def test_cache_folder_that_cannot_be_made_names_ohem_cache(tmp_path, monkeypatch):
    from ohemcli.errors import UserError
    from ohemcli.fileio import cache_dir

    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "file" / "sub" / "cache"))
    with pytest.raises(UserError, match=r"^OHEM_CACHE=.*is a file"):
        cache_dir()
    monkeypatch.setenv("OHEM_CACHE", str(tmp_path / "new" / "cache"))
    assert cache_dir() == tmp_path / "new" / "cache"  # creatable: fine, and not made yet
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_follow_the_umask_as_open_does(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain", "w") as f:  # the reference: what open() gives
            f.write("x")
        written = atomic_write_text(tmp_path / "atomic", "x")
        atomic_write_text(tmp_path / "plain", "y")  # rewriting an existing file too
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == expected
    assert stat.S_IMODE(written.stat().st_mode) == expected
    assert current_umask() == old


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"mAP": 1' + "0" * 5000 + "}", "integer of 5001 digits"),  # Python's limit: ValueError
        ('{"mAP": 1' + "0" * 400 + "}", "integer of 401 digits"),  # would overflow a float
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),  # RecursionError
        ("{not json", "not valid JSON"),
    ],
    ids=["5000 digits", "400 digits", "deep", "corrupt"],
)
def test_hostile_json_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "summary.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        read_json(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_any_yaml_failure_is_one_line_naming_the_file():
    # A date out of range parses as YAML but its constructor raises ValueError.
    with pytest.raises(UserError, match=r"^c.yaml: invalid YAML \(ValueError"):
        load_yaml("train:\n  when: 2001-13-45\n", "c.yaml")


@pytest.mark.parametrize("step", ['"5"', "[1]", "true"])
def test_truncate_jsonl_refuses_an_iter_that_is_no_number(tmp_path, step):
    path = tmp_path / "evals.jsonl"
    path.write_text('{"iter": 1}\n{"iter": ' + step + "}\n")
    with pytest.raises(UserError, match=r"evals.jsonl:2: iter = .* is not a number"):
        truncate_jsonl(path, 1)
    assert path.read_text() == '{"iter": 1}\n{"iter": ' + step + "}\n"  # left as it was
