"""Model building: calibrated random weights, pretrained from a cache, state dict files."""

from __future__ import annotations

import pytest
import torch
import torchvision
from helpers import SMALL_MODEL

from bench.data.images import sample_photos
from bench.data.preprocess import preprocess_files
from bench.errors import UsageError
from bench.models import MODELS, check_model_name
from bench.models.build import build_model


def _photos(name: str) -> torch.Tensor:
    spec = MODELS.get(name)
    return torch.from_numpy(preprocess_files([i.path for i in sample_photos()], spec.preprocess))


def test_batchnorm_calibration_makes_random_logits_non_degenerate():
    x = _photos("efficientnet_b0")
    torch.manual_seed(0)
    raw = torchvision.models.efficientnet_b0(weights=None).eval()
    calibrated = build_model(MODELS.get("efficientnet_b0"), "random", seed=0, calibration=x)
    with torch.no_grad():
        raw_logits, logits = raw(x), calibrated(x)
    assert raw_logits.abs().max() < 1e-6  # collapsed: what calibration exists to prevent
    assert logits.abs().max() > 0.1
    assert logits.std(dim=1).min() > 1e-2
    assert len(set(logits.argmax(dim=1).tolist())) > 1, "different photos, different classes"


def test_random_weights_are_seeded():
    x = _photos(SMALL_MODEL)
    spec = MODELS.get(SMALL_MODEL)
    a, b = (build_model(spec, "random", seed=1, calibration=x) for _ in range(2))
    c = build_model(spec, "random", seed=2, calibration=x)
    for (_, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(pa, pb)
    assert not torch.equal(a.classifier[-1].weight, c.classifier[-1].weight)


def test_pretrained_loads_from_the_torch_hub_cache(tmp_path, monkeypatch):
    spec = MODELS.get(SMALL_MODEL)
    weights = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    source = torchvision.models.mobilenet_v3_small(weights=None)
    torch.save(source.state_dict(), checkpoints / weights.url.rsplit("/", 1)[1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # torchvision checks the file's hash prefix only when asked to; the cache path is the real one.
    model = build_model(spec, "pretrained", seed=0)
    torch.testing.assert_close(model.classifier[-1].weight, source.classifier[-1].weight)


def test_pretrained_without_cache_or_network_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # A proxy on a closed local port makes the download fail fast on any machine.
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    with pytest.raises(UsageError, match=r"neither in the torch hub cache .*checkpoints"):
        build_model(MODELS.get(SMALL_MODEL), "pretrained", seed=0)


def test_state_dict_of_another_model_is_refused(tmp_path):
    path = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(UsageError, match=r"not a state dict for mobilenet_v3_small"):
        build_model(MODELS.get(SMALL_MODEL), str(path), seed=0)


def test_model_names():
    assert {"resnet50", "efficientnet_b0", "mobilenet_v3_large"} <= set(MODELS.names())
    assert check_model_name("onnx:/x.onnx") == "onnx:/x.onnx"
    with pytest.raises(UsageError, match="valid choices: .*mobilenet_v3_large.*onnx:PATH"):
        check_model_name("vgg16")


def test_overhead_probe_is_near_empty_and_exports(tmp_path):
    """The per-call overhead model: a few thousand FLOPs on a 32x32 photo, a real artifact."""
    from bench.export import ExportSpec, export
    from bench.models import OVERHEAD_PROBE

    artifact, _ = export(ExportSpec(model=OVERHEAD_PROBE), tmp_path)
    assert artifact.inputs.shape[1:] == (3, 32, 32)
    assert artifact.references["logits"].shape == (len(artifact.inputs), 8)
    # mean over 3x32x32 (3072 adds) + 3x8 multiply-adds (48) at most
    assert 0 < artifact.meta["flops_per_sample"] <= 3072 + 48
    # distinct logits per photo: a parity check on it can fail
    assert len(set(artifact.references["logits"].argmax(1))) > 1
    with pytest.raises(UsageError, match="overhead_probe has no pretrained weights"):
        build_model(MODELS.get(OVERHEAD_PROBE), "pretrained", seed=0)
