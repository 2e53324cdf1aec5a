"""The verified cache: entries are built whole, verified before use, rebuilt when they do not
match their manifest, and a cell's staged entries reach the shared cache only when they are its
own artifact's and verify."""

from __future__ import annotations

import json
import logging
import os

import pytest

from bench import cache


@pytest.fixture
def shared(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(cache.STAGING_ENV, raising=False)
    return tmp_path / "cache"


def _maker(calls: list[str], content: bytes = b"compiled"):
    def make(folder):
        calls.append(str(folder))
        (folder / "model.bin").write_bytes(content)
        (folder / "sub").mkdir()
        (folder / "sub" / "part.txt").write_text("two")

    return make


def test_an_entry_is_built_once_then_reused(shared):
    calls: list[str] = []
    entry = cache.entry("onnx", "abcd", what={"precision": "int8"})
    assert entry.name == "abcd-" + cache.digest({"precision": "int8"})
    folder, reused = entry.get(_maker(calls))
    assert (folder, reused) == (shared / "onnx" / entry.name, False)
    assert entry.get(_maker(calls)) == (folder, True)
    assert len(calls) == 1
    manifest = json.loads((folder / cache.MANIFEST).read_text())
    assert manifest["files"]["model.bin"]["bytes"] == len(b"compiled")
    assert sorted(manifest["files"]) == ["model.bin", "sub/part.txt"]
    # nothing of the build is left beside the entry
    assert [p.name for p in folder.parent.iterdir()] == [entry.name]


@pytest.mark.parametrize(
    "poison",
    [
        lambda f: (f / "model.bin").write_bytes(b"compiles"),  # same size, one byte changed
        lambda f: (f / "model.bin").write_bytes(b"comp"),  # truncated
        lambda f: (f / "extra.so").write_bytes(b"planted"),  # a file the manifest lacks
        lambda f: (f / "sub" / "part.txt").unlink(),  # a file missing
        lambda f: (f / cache.MANIFEST).write_text("{not json"),  # a broken manifest
        lambda f: (f / cache.MANIFEST).unlink(),  # no manifest: never trusted
        lambda f: [(f / "model.bin").unlink(), (f / "model.bin").symlink_to("/etc/hostname")],
    ],
)
def test_an_entry_that_does_not_match_its_manifest_is_rebuilt(shared, caplog, poison):
    calls: list[str] = []
    entry = cache.entry("torch-int8", "abcd", "b1")
    folder, _ = entry.get(_maker(calls))
    poison(folder)
    assert not cache.verify(folder)
    with caplog.at_level(logging.WARNING, logger="bench.cache"):
        assert entry.lookup() is None
    assert "does not match its manifest: rebuilding it" in caplog.text
    again, reused = entry.get(_maker(calls))
    assert (again, reused) == (folder, False) and len(calls) == 2
    assert cache.verify(again) and (again / "model.bin").read_bytes() == b"compiled"


def test_a_failed_build_leaves_nothing(shared):
    entry = cache.entry("onnx", "abcd")

    def fail(folder):
        (folder / "model.bin").write_bytes(b"half")
        raise RuntimeError("quantizer crashed")

    with pytest.raises(RuntimeError):
        entry.get(fail)
    assert not (shared / "onnx").exists() or list((shared / "onnx").iterdir()) == []


def test_a_seeded_build_updates_a_copy_and_replaces_the_entry(shared):
    entry = cache.entry("tvm", "abcd")
    first, _ = entry.get(_maker([]))
    with entry.build(seed=entry.lookup()) as work:
        assert (work / "model.bin").read_bytes() == b"compiled"
        (work / "more.json").write_text("{}")
        assert not (first / "more.json").exists()  # the published entry is not touched
    assert sorted(json.loads((first / cache.MANIFEST).read_text())["files"]) == [
        "model.bin",
        "more.json",
        "sub/part.txt",
    ]
    assert cache.verify(first)


def test_with_staging_a_cell_publishes_only_into_its_staging_folder(shared, tmp_path, monkeypatch):
    cache.entry("onnx", "abcd").get(_maker([]))  # in the shared cache, from an earlier cell
    staging = tmp_path / "staging"
    monkeypatch.setenv(cache.STAGING_ENV, str(staging))
    assert cache.entry("onnx", "abcd").lookup() == shared / "onnx" / "abcd"
    folder, reused = cache.entry("onnx", "abcd", "int8").get(_maker([]))
    assert (folder, reused) == (staging / "onnx" / "abcd-int8", False)
    assert cache.entry("onnx", "abcd", "int8").lookup() == folder  # staged first
    assert not (shared / "onnx" / "abcd-int8").exists()


def test_promotion_takes_only_verified_entries_of_the_cells_own_artifact(shared, tmp_path):
    staging = tmp_path / "staging"
    os.environ[cache.STAGING_ENV] = str(staging)
    try:
        for name in ("abcd-int8", "abcd-fp16", "ffff-int8"):
            cache.entry("onnx", name).get(_maker([]))
        (staging / "onnx" / "abcd-fp16" / "model.bin").write_bytes(b"poisoned")
        (staging / "onnx" / ".abcd-x.tmp").mkdir()  # a build the cell never finished
    finally:
        del os.environ[cache.STAGING_ENV]
    promoted, refused = cache.promote(staging, shared, "abcd")
    assert promoted == ["onnx/abcd-int8"]
    assert refused == [
        "onnx/abcd-fp16: does not match its manifest",
        "onnx/ffff-int8: not an entry of this cell's artifact",
    ]
    assert sorted(p.name for p in (shared / "onnx").iterdir()) == ["abcd-int8"]
    assert cache.verify(shared / "onnx" / "abcd-int8")
    assert (shared / "onnx" / "abcd-int8" / "model.bin").stat().st_uid == os.getuid()
