"""The Docker executor against the real engine: images built here, cells in fresh containers.

Needs a reachable Docker engine; CI starts one (.ci/run) and sets DEPLOYBENCH_REQUIRE_DOCKER=1
so that a missing engine fails instead of skipping. The base image comes from
DEPLOYBENCH_BASE_IMAGE, else the offline base if present (`make base-offline`), else
python:3.11-slim-bookworm.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import (
    assert_all_gpu_cells_skipped,
    assert_valid_result_file,
    docker_or_skip,
    run_gpu_matrix,
)

from runner.images import IMAGES, REPO, BuildSettings, ensure_images
from runner.matrix import load_matrix
from runner.orchestrate import MatrixRun, RunOptions

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker_executor():
    from runner.executors.docker import DockerExecutor

    _, base = docker_or_skip()
    executor = DockerExecutor(settings=BuildSettings(base_image=base))
    ensure_images(
        executor.client, [IMAGES.get("ort-cpu"), IMAGES.get("ov-cpu")], executor.settings, log=print
    )
    return executor


def _run(executor, matrix_path, small_artifact, tmp_path, cell_env=None):
    opts = RunOptions(
        run_id="d",
        results_root=tmp_path / "results",
        artifacts_dir=small_artifact.path.parent,
        export=False,
        cell_env=cell_env or {},
    )
    return MatrixRun(load_matrix(str(matrix_path)), executor, executor, opts, log=print).run()


def _labelled_containers(executor, run_id="d"):
    return executor.client.containers.list(
        all=True, filters={"label": f"ai.deploybench.run={run_id}"}
    )


def test_cells_run_in_their_own_images(
    docker_executor, small_matrix_file, small_artifact, tmp_path
):
    path = small_matrix_file(frameworks=("onnxruntime", "openvino", "tvm"))
    summary = _run(docker_executor, path, small_artifact, tmp_path)
    assert [r.status for r in summary.results] == ["ok", "ok", "ok"], summary.results
    for result in summary.results:
        assert result.parity_passed
        image = {"onnxruntime": "ort-cpu", "openvino": "ov-cpu", "tvm": "tvm-cpu"}[
            result.cell["framework"]
        ]
        container = result.environment["container"]
        assert container["in_container"] is True
        assert container["image"] == f"deploybench/{image}:latest"
        assert container["image_digest"] == docker_executor.client.images.get(container["image"]).id
        # the other framework is not even installed in this image
        assert result.runtime["threads"] == 1
        # its own container's cgroup peak (which may be below the process's RSS: library pages
        # already in the host's page cache are charged to whoever read them first)
        memory = result.memory
        assert memory["container"]["source"] is not None, memory["container"]
        assert memory["container"]["peak_mib"] > 10 and memory["process"]["peak_rss_load_mib"] > 50
        assert memory["size"]["artifact_bytes"] == (small_artifact.onnx_path.stat().st_size)
    cells = summary.run_dir / "cells"
    for file in cells.glob("*.json"):
        assert_valid_result_file(file)
        assert file.stat().st_uid == os.getuid()
    assert not _labelled_containers(docker_executor), "every cell container is removed"


def test_rounds_run_each_in_a_fresh_container_in_the_recorded_order(
    docker_executor, small_matrix_file, small_artifact, tmp_path
):
    path = small_matrix_file(frameworks=("onnxruntime", "openvino"))
    path.write_text(path.read_text() + "\nrounds: 2\n")
    summary = _run(docker_executor, path, small_artifact, tmp_path)
    assert [r.status for r in summary.results] == ["ok", "ok"], summary.results
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    ran = []  # (created_at, container hostname) of each round, in the recorded order
    for index, order in manifest["rounds"]["orders"].items():
        for cell_id in order:
            own = json.loads((summary.run_dir / "rounds" / cell_id / f"r{index}.json").read_text())
            assert own["environment"]["container"]["in_container"] is True
            ran.append((own["created_at"], own["environment"]["hostname"]))
    assert len(ran) == 4 and len({host for _, host in ran}) == 4  # four fresh containers
    assert [t for t, _ in ran] == sorted(t for t, _ in ran)  # they ran in the recorded order
    assert all(len(r.timing["rounds"]) == 2 for r in summary.results)
    assert not _labelled_containers(docker_executor), "every cell container is removed"


def test_export_in_docker_takes_a_users_onnx_file_and_photos(docker_executor, tmp_path):
    """Bring your own model: an ONNX file and a photo folder on the host, mounted read-only into
    the export container (ort-cpu: a user ONNX model needs ONNX Runtime, not torch)."""
    import torch

    from bench.artifact import Artifact
    from bench.data.images import sample_photos
    from bench.export import ExportSpec
    from runner.executors.base import ExportJob

    model = tmp_path / "mine.onnx"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=8), torch.nn.Flatten(1))
    torch.onnx.export(net.eval(), (torch.zeros(1, 3, 224, 224),), str(model), dynamo=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    for image in sample_photos()[:2]:
        shutil.copy(image.path, photos / image.name)
    spec = ExportSpec(model=f"onnx:{model}", images=str(photos))
    job = ExportJob(spec, tmp_path / "artifacts", tmp_path / "export.log", 600)
    assert docker_executor.export(job) == 0, job.log_path.read_text()
    made = json.loads(job.result_path.read_text())
    artifact = Artifact.load(job.artifacts_dir / made["artifact"])
    assert [i["name"] for i in artifact.meta["images"]] == [p.name for p in sample_photos()[:2]]
    assert artifact.meta["source_onnx"] == "/model/mine.onnx" and artifact.inputs.shape[0] == 2
    assert not _labelled_containers(docker_executor, "export")


def test_native_runners_run_in_the_openvino_image(
    docker_executor, small_matrix_file, small_artifact, tmp_path
):
    """openvino-cpp and openvino-ctypes use the runner and library built into ov-cpu."""
    path = small_matrix_file(frameworks=("openvino-cpp", "openvino-ctypes"))
    summary = _run(docker_executor, path, small_artifact, tmp_path)
    assert [r.status for r in summary.results] == ["ok", "ok"], summary.results
    for result in summary.results:
        assert result.parity_passed
        assert result.environment["container"]["image"] == "deploybench/ov-cpu:latest"
        assert result.runtime["native_build"].startswith("/opt/venv/native/openvino/")
        assert result.runtime["threads"] == 1


def test_onnxruntime_and_tvm_native_runners_run_in_their_images(
    docker_executor, small_matrix_file, small_artifact, tmp_path
):
    """onnxruntime-cpp and tvm-ctypes use the runners built into ort-cpu and tvm-cpu: ONNX
    Runtime's against the fetched headers, TVM's loading the library exported in the cell."""
    path = small_matrix_file(frameworks=("onnxruntime-cpp", "tvm-ctypes"))
    summary = _run(docker_executor, path, small_artifact, tmp_path)
    by_framework = {r.cell["framework"]: r for r in summary.results}
    assert {f: r.status for f, r in by_framework.items()} == {
        "onnxruntime-cpp": "ok",
        "tvm-ctypes": "ok",
    }, summary.results
    for framework, image in (("onnxruntime-cpp", "ort-cpu"), ("tvm-ctypes", "tvm-cpu")):
        result = by_framework[framework]
        assert result.parity_passed
        assert result.environment["container"]["image"] == f"deploybench/{image}:latest"
        native = framework.split("-")[0]
        assert result.runtime["native_build"].startswith(f"/opt/venv/native/{native}/")
    assert by_framework["tvm-ctypes"].runtime["threads"] == 1  # read back from TVM's pool
    assert by_framework["tvm-ctypes"].runtime["tuning"] == "UNTUNED"
    assert by_framework["onnxruntime-cpp"].runtime["library"].startswith("/opt/venv/")


def test_a_versions_matrix_runs_each_version_in_its_own_image(
    docker_executor, small_matrix_file, small_artifact, tmp_path
):
    """versions: {onnxruntime: [default, 1.22.1]} plans two images, builds the other version's
    from its own lock file and runs both; each cell reads its version back from the framework."""
    from runner.images import built_versions

    default, other = next(iter(built_versions("onnxruntime", "cpu"))), "1.22.1"
    path = small_matrix_file(frameworks=("onnxruntime",))
    path.write_text(path.read_text() + f"versions: {{onnxruntime: [{default}, {other}]}}\n")
    summary = _run(docker_executor, path, small_artifact, tmp_path)
    by_version = {r.cell["version"]: r for r in summary.results}
    assert {v: r.status for v, r in by_version.items()} == {default: "ok", other: "ok"}
    for version, tag in ((default, "latest"), (other, other)):
        result = by_version[version]
        assert result.parity_passed
        assert result.runtime["framework_version"] == version
        assert result.environment["packages"]["onnxruntime"] == version
        container = result.environment["container"]
        assert container["image"] == f"deploybench/ort-cpu:{tag}"
        assert container["image_digest"] == docker_executor.client.images.get(container["image"]).id
    digests = {r.environment["container"]["image_digest"] for r in summary.results}
    assert len(digests) == 2
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert {"ort-cpu", f"ort-cpu@{other}"} <= set(manifest["images"])


def test_a_model_pinning_a_version_without_an_image_is_unsupported_before_any_work(
    docker_executor, small_matrix_file, small_artifact, tmp_path, monkeypatch
):
    from dataclasses import replace

    from bench.models import MODELS

    spec = replace(MODELS.get("mobilenet_v3_small"), framework_versions=(("onnxruntime", "1.7.0"),))
    monkeypatch.setitem(MODELS._entries, "mobilenet_v3_small", spec)
    path = small_matrix_file(frameworks=("onnxruntime", "openvino"))
    summary = _run(docker_executor, path, small_artifact, tmp_path)
    by_framework = {r.cell["framework"]: r for r in summary.results}
    pinned = by_framework["onnxruntime"]
    assert pinned.status == "unsupported" and pinned.cell["version"] == "1.7.0"
    assert "no image has onnxruntime 1.7.0" in pinned.reason
    # Refused by the runner: no image, no container, no log.
    assert pinned.environment.get("container", {}).get("image") is None
    assert by_framework["openvino"].status == "ok"
    log = "mobilenet_v3_small-onnxruntime@1.7.0-cpu-fp32-b1.log"
    assert not (summary.run_dir / "logs" / log).exists()


def test_crash_hang_and_oom_in_containers_are_isolated(
    docker_executor, small_matrix_file, small_artifact, tmp_path
):
    path = small_matrix_file(frameworks=("onnxruntime", "openvino"), memory="768m", timeout=20)
    text = path.read_text().replace("batch_sizes: [1]", "batch_sizes: [1, 2, 3]")
    path.write_text(text)
    faults = {1: "crash", 2: "hang", 3: "oom"}
    env = {
        f"mobilenet_v3_small-onnxruntime-cpu-fp32-b{b}": {"DEPLOYBENCH_FAULT": f}
        for b, f in faults.items()
    }
    summary = _run(docker_executor, path, small_artifact, tmp_path, cell_env=env)
    by_id = {f"{r.cell['framework']}-b{r.cell['batch_size']}": r for r in summary.results}
    assert "SIGSEGV" in by_id["onnxruntime-b1"].reason
    assert "timed out after 20 s" in by_id["onnxruntime-b2"].reason
    assert "ran out of memory (limit 768m)" in by_id["onnxruntime-b3"].reason
    for b in faults:
        failed = by_id[f"onnxruntime-b{b}"]
        assert failed.status == "failed"
        assert failed.environment["container"]["image"] == "deploybench/ort-cpu:latest"
    assert all(by_id[f"openvino-b{b}"].status == "ok" for b in faults)
    for file in (summary.run_dir / "cells").glob("*.json"):
        assert_valid_result_file(file)
    assert not _labelled_containers(docker_executor)


def test_gpu_cells_without_nvidia_runtime_are_skipped(
    docker_executor, small_matrix_file, small_artifact, tmp_path
):
    if not docker_executor.gpu_reason:
        pytest.skip("this engine has the NVIDIA runtime")
    summary = _run(docker_executor, small_matrix_file(devices=("cuda",)), small_artifact, tmp_path)
    (result,) = summary.results
    assert result.status == "skipped" and "nvidia-container-toolkit" in result.reason
    assert_valid_result_file(
        summary.run_dir / "cells" / f"{result.cell['model']}-onnxruntime-cuda-fp32-b1.json"
    )


def test_images_are_up_to_date_and_labelled(docker_executor):
    # ensure_images (in the fixture) left no superseded or build-stage image behind.
    for label in ("ai.deploybench.stage=build", "ai.deploybench.context-sha256"):
        filters = {"dangling": True, "label": label}
        assert docker_executor.client.images.list(filters=filters) == []
    image = docker_executor.client.images.get("deploybench/ort-cpu:latest")
    labels = image.labels
    assert "onnxruntime==1.31.1" in labels["ai.deploybench.frameworks"]
    assert labels["org.opencontainers.image.source"]
    assert image.attrs["Config"]["User"] == "bench"
    # torch is not in the ONNX Runtime image
    out = docker_executor.client.containers.run(
        "deploybench/ort-cpu:latest", ["info", "--json"], remove=True, network_disabled=True
    )
    assert b'"torch": {\n      "module": "torch",\n      "importable": false' in out


def test_compose_file_is_valid_for_docker_compose_v1(tmp_path):
    proc = subprocess.run(
        ["docker-compose", "-f", "compose.yaml", "config", "--services"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    services = set(proc.stdout.split())
    assert {"export", "torch-cpu", "ort-cpu", "ov-cpu", "tvm-cpu"} <= services
    assert {"torch-gpu", "ort-gpu", "trt-gpu", "tvm-gpu"} <= services  # one per GPU image


def test_docker_compose_v1_runs_the_openvino_cells_of_the_default_matrix(
    docker_executor, artifacts_dir, tmp_path
):
    """`docker-compose run ov-cpu` with the quick matrix's artifacts already exported."""
    from bench.export import export

    quick = load_matrix("quick")
    for model in quick.models:
        export(quick.export_spec(model), artifacts_dir)
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "compose.yaml", project / "compose.yaml")
    (project / "artifacts").symlink_to(artifacts_dir)

    def compose_run(service: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker-compose", "run", "--rm", "--no-deps", service],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=900,
        )

    folders = compose_run("folders")  # what `ov-cpu` runs first without --no-deps
    assert folders.returncode == 0, folders.stderr
    proc = compose_run("ov-cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (project / "results").iterdir()
    assert run_dir.name.startswith("quick-openvino-")
    results = sorted((run_dir / "cells").glob("*.json"))
    assert [r.name for r in results] == [
        "mobilenet_v3_large-openvino-cpu-fp32-b1.json",
        "resnet50-openvino-cpu-fp32-b1.json",
    ]
    for path in results:
        doc = assert_valid_result_file(path)
        assert doc["status"] == "ok" and doc["parity"]["verdict"] == "pass"
        assert path.stat().st_uid == 10001  # the images' user, whatever the host's
    assert "openvino" in proc.stdout  # the comparison table


def test_make_bench_gpu_without_nvidia_runtime_skips_every_cell_up_front(docker_executor, tmp_path):
    # `make bench-gpu` is this command: nothing is built or exported only to be skipped.
    if docker_executor.gpu_reason is None:
        pytest.skip("this engine has the NVIDIA runtime")
    proc, run_dir, artifacts = run_gpu_matrix(tmp_path, "docker")
    assert_all_gpu_cells_skipped(proc, run_dir, artifacts, "nvidia-container-toolkit")


@pytest.fixture(scope="module")
def gpu_images(docker_executor):
    """The GPU images that build without NVIDIA's own index (trt-gpu needs pypi.nvidia.com,
    torch-gpu is torch-cpu's wheels again, 6.5 GB): built here, on a CPU host."""
    specs = [IMAGES.get("ort-gpu"), IMAGES.get("tvm-gpu")]
    return ensure_images(docker_executor.client, specs, docker_executor.settings, log=print)


def _python_in(client, image: str, *args: str, volumes=None) -> str:
    return client.containers.run(
        image,
        list(args),
        entrypoint="python3",
        network_disabled=True,
        remove=True,
        volumes=volumes or {},
    ).decode()


def test_gpu_images_build_on_a_cpu_host_with_their_cuda_parts(docker_executor, gpu_images):
    client = docker_executor.client
    providers = _python_in(
        client,
        "deploybench/ort-gpu:latest",
        "-c",
        "import onnxruntime as o; from bench.backends.cuda import cuda_unavailable_reason as r;"
        "print(o.get_available_providers(), r())",
    )
    assert "CUDAExecutionProvider" in providers and "libcuda.so.1 not found" in providers
    probe = Path(__file__).parent / "in_image" / "tvm_cuda_compile.py"
    out = _python_in(
        client,
        "deploybench/tvm-gpu:latest",
        "/probe.py",
        volumes={str(probe): {"bind": "/probe.py", "mode": "ro"}},
    )
    assert out.strip().endswith("cubin True"), out
