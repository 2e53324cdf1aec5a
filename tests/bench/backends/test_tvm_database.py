"""The committed TVM databases: keyed by the exact target, found only for it (pure logic on
hand-made folders; applying one for real is in test_tvm_tuning.py)."""

from __future__ import annotations

import json

from bench.backends.tvm_database import (
    PROVENANCE,
    RECORDS,
    WORKLOADS,
    database_dir,
    find_committed,
    target_id,
)

ZEN4 = {"kind": "llvm", "tag": "", "keys": ["cpu"], "num-cores": 2, "mcpu": "znver4"}
ZEN3 = {**ZEN4, "mcpu": "znver3"}


def _commit(root, target, model="resnet50", batch=1, tvm="0.27.0.post1", records=3):
    folder = database_dir(root, target, model, batch)
    folder.mkdir(parents=True)
    (folder / WORKLOADS).write_text('["w"]\n')
    (folder / RECORDS).write_text("[0]\n" * records)
    provenance = {"target": target, "tvm": tvm, "records": records, "per_task": 16,
                  "tuning_s": 600.0, "host_cpu": "AMD EPYC (Zen 4)"}  # fmt: skip
    (folder / PROVENANCE).write_text(json.dumps(provenance))
    return folder


def test_the_target_id_names_the_cpu_and_threads_and_changes_with_any_field():
    assert target_id(ZEN4).startswith("llvm-znver4-2c-")
    ids = {target_id(t) for t in (ZEN4, ZEN3, {**ZEN4, "num-cores": 1}, {**ZEN4, "tag": "x"})}
    assert len(ids) == 4
    assert target_id(dict(reversed(list(ZEN4.items())))) == target_id(ZEN4)  # key order: same


def test_the_database_of_this_exact_target_is_found_with_its_budget(tmp_path):
    folder = _commit(tmp_path, ZEN4)
    found, note = find_committed("resnet50", ZEN4, 1, "0.27.0.post1", tmp_path)
    assert note is None and found.path == folder
    assert (found.records, found.per_task) == (3, 16)
    assert found.budget_note() == "committed database: 3 trials, 10 min on AMD EPYC (Zen 4)"
    long_name = "Intel(R) Xeon(R) Processor — SPR-class (family 6, model 167, stepping 1); AMX"
    named = type(found)(found.path, {**found.provenance, "host_cpu": long_name})
    assert named.budget_note().endswith("10 min on Intel(R) Xeon(R) Processor — SPR-class")
    summary = found.summary()
    assert summary["folder"] == f"{target_id(ZEN4)}/resnet50-b1" and len(summary["sha256"]) == 64


def test_another_cpu_batch_or_tvm_version_finds_none_and_says_why(tmp_path):
    _commit(tmp_path, ZEN4)
    found, note = find_committed("resnet50", ZEN3, 1, "0.27.0.post1", tmp_path)
    assert found is None
    assert note.startswith(f"committed databases for resnet50 at batch 1 are for {target_id(ZEN4)}")
    assert f"none for this target ({target_id(ZEN3)})" in note
    assert find_committed("resnet50", ZEN4, 8, "0.27.0.post1", tmp_path) == (None, None)
    assert find_committed("mobilenet_v3_large", ZEN4, 1, "0.27.0.post1", tmp_path) == (None, None)
    found, note = find_committed("resnet50", ZEN4, 1, "0.28.0", tmp_path)
    assert found is None and "tuned with TVM 0.27.0.post1, this is 0.28.0" in note


def test_a_folder_copied_under_another_targets_name_is_not_applied(tmp_path):
    folder = _commit(tmp_path, ZEN4)
    wrong = database_dir(tmp_path, ZEN3, "resnet50", 1)
    wrong.parent.mkdir(parents=True)
    folder.rename(wrong)
    found, note = find_committed("resnet50", ZEN3, 1, "0.27.0.post1", tmp_path)
    assert found is None and "its provenance names another target" in note


def test_the_repositorys_databases_are_each_in_their_targets_folder():
    from bench.backends.tvm_database import REPO_TUNING

    folders = list(REPO_TUNING.glob(f"*/*/{PROVENANCE}"))
    assert folders, "the committed databases are part of the repository"
    for path in folders:
        provenance = json.loads(path.read_text())
        assert path.parent.parent.name == target_id(provenance["target"])
        assert path.parent.name == f"{provenance['model']}-b{provenance['batch']}"
        assert (path.parent / RECORDS).is_file() and (path.parent / WORKLOADS).is_file()
        assert provenance["records"] > 0 and provenance["host_cpu"] and provenance["tuning_s"] > 0


def test_a_committed_budget_is_named_inside_the_label():
    from bench.backends.tvm_database import tuning_label

    note = "committed database: 1030 trials, 23 min on X"
    assert tuning_label(1030, 71, 71, 16, note) == f"TUNED (1030 trials of 71 tasks x 16; {note})"
    assert tuning_label(64, 71, 7, 16, note) == (
        f"LIGHTLY TUNED (7 of 71 tasks tuned; 64 trials of 71 tasks x 16; {note})"
    )
    assert tuning_label(0, 71, None, 16, note) == "UNTUNED"
