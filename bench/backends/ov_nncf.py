"""OpenVINO int8 through NNCF post-training quantization: OpenVINO's own quantization tool,
run on the OpenVINO model read from the artifact and calibrated on the artifact's photos.

`nncf.quantize` with the performance preset (symmetric activations and weights) and its default
settings otherwise, on every calibration sample (`bench.quantize.calibration_batches`, the
samples the other frameworks calibrate on). The quantized model is cached as OpenVINO IR
(`ov.save_model`, float weights kept in fp32) per artifact, recipe, NNCF and OpenVINO versions
and calibration data, written to a temporary folder and renamed into place.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import openvino as ov

from bench import cache
from bench.artifact import Artifact
from bench.backends.cpu import int8_cpu_settings
from bench.errors import Unsupported
from bench.quantize import (
    calibration_batch_size,
    calibration_batches,
    calibration_digest,
    short_digest,
)

# Everything that decides the quantized model besides the model and the calibration data.
RECIPE: dict[str, object] = {
    "tool": "nncf.quantize",
    "preset": "performance",
    "subset_size": "every calibration sample",
    "settings": "NNCF defaults otherwise",
}
IR_FILE = "model.xml"  # and model.bin beside it


def nncf_version() -> str:
    """The installed NNCF's version, read without importing it (which imports torch where
    torch is installed: seconds a cached model does not need)."""
    try:
        return metadata.version("nncf")
    except metadata.PackageNotFoundError as exc:
        raise Unsupported(
            "openvino int8 with quantizer=nncf (the default) needs the nncf package (the ov extra)"
        ) from exc


def recipe() -> dict[str, object]:
    """The recipe with this CPU's `overflow_fix`: NNCF's fix for CPUs without VNNI there, its
    default elsewhere."""
    return {**RECIPE, **int8_cpu_settings("openvino")}


def recipe_digest() -> str:
    """A short hash of the recipe and the NNCF and OpenVINO versions that apply it."""
    return short_digest({"recipe": recipe(), "nncf": nncf_version(), "openvino": ov.get_version()})


def ir_entry(artifact: Artifact) -> cache.Entry:
    """The cache entry of the NNCF-quantized IR of this artifact."""
    parts = [artifact.key[:16], recipe_digest(), calibration_digest(artifact.inputs)[:16]]
    return cache.entry("openvino-nncf", *parts)


def quantized_ir(core: ov.Core, artifact: Artifact) -> tuple[Path, bool]:
    """The artifact's model quantized by NNCF, as cached IR: (path of the .xml, reused?)."""
    entry = ir_entry(artifact)
    if found := entry.lookup():
        return found / IR_FILE, True
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
    )

    model = core.read_model(str(artifact.onnx_path))
    batches = calibration_batches(artifact.inputs, calibration_batch_size(artifact))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(batches),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(batches),
        advanced_parameters=AdvancedQuantizationParameters(
            overflow_fix=OverflowFix(recipe()["overflow_fix"])
        ),
    )
    with entry.build() as tmp:
        # Float weights stay fp32: save_model would otherwise store them as fp16.
        ov.save_model(quantized, str(tmp / IR_FILE), compress_to_fp16=False)
    return entry.path / IR_FILE, False
