"""PyTorch int8 on CPU: post-training static quantization through PT2E (torchao), lowered by
Inductor to oneDNN's int8 kernels — the path PyTorch documents for x86 CPUs.

1. The model is captured with `torch.export` at the cell's batch size. Strict (Dynamo) capture:
   the default non-strict capture gives every call of one module a single source partition,
   and torchvision's ResNet bottleneck calls one ReLU three times, which X86InductorQuantizer
   refuses ("Input partition has more than one output node", pytorch/ao#4478).
2. `prepare_pt2e` with `X86InductorQuantizer` and its default static configuration (uint8
   affine per-tensor activations from histogram observers, int8 symmetric per-channel
   weights), calibrated on the artifact's photos (`bench.quantize.calibration_batches`, the
   samples ONNX Runtime, OpenVINO and TensorRT calibrate on), then `convert_pt2e`.
3. The converted program is float operators between quantize/dequantize pairs: run eagerly it
   computes in fp32 (fake quantization). Only `torch.compile` with Inductor's freezing on
   matches those pairs into oneDNN int8 convolutions and linears with prepacked weights. So
   the cell is compiled at load, the code Inductor generated is read back and its int8 kernel
   calls are counted; without any, the cell is `unsupported`, never a fake-quant fp32 run
   labelled int8.

The converted program is cached (`torch.export.save`, written atomically) per artifact, batch
size, memory format, recipe, torch and torchao versions and calibration data; Inductor keeps
its own compile cache.
"""

from __future__ import annotations

import re
import sysconfig
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import torch

from bench import cache
from bench.artifact import Artifact
from bench.backends.cpu import int8_cpu_settings
from bench.errors import Unsupported
from bench.quantize import calibration_digest, short_digest

# Everything that decides the quantized program besides the model and the calibration data.
RECIPE: dict[str, object] = {
    "tool": "torchao.quantization.pt2e (prepare_pt2e, convert_pt2e)",
    "capture": "torch.export, strict, static shapes",
    "quantizer": "X86InductorQuantizer, get_default_x86_inductor_quantization_config",
    "activations": "uint8 affine per-tensor, HistogramObserver",
    "weights": "int8 symmetric per-channel",
    "lowering": "torch.compile (Inductor) with freezing",
}

# Calls in Inductor's generated wrapper code: oneDNN's quantized kernels, and the float
# convolution / matmul kernels that a layer left unquantized would call instead.
PROGRAM_FILE = "program.pt2"  # the file of a "torch-int8" cache entry
_INT8_CALL = re.compile(r"torch\.ops\.((?:onednn\.q|quantized\.)\w+)")
_FLOAT_CALL = re.compile(r"torch\.ops\.((?:mkldnn|mkl)\.\w+)|extern_kernels\.(\w+)")


def recipe() -> dict[str, object]:
    """The recipe with this CPU's setting: `reduce_range` (7-bit activations) where int8
    saturates without VNNI, as torchao recommends; its default elsewhere."""
    return {**RECIPE, **int8_cpu_settings("torch")}


def recipe_digest() -> str:
    """A short hash of the recipe and the torch and torchao versions that apply it."""
    return short_digest(
        {"recipe": recipe(), "torch": torch.__version__, "torchao": metadata.version("torchao")}
    )


def unavailable_reason() -> str | None:
    """Why int8 cannot run here: torchao missing, or what Inductor needs to build its C++
    kernels on CPU (a compiler, Python's headers) missing; None when it can."""
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        metadata.version("torchao")
    except metadata.PackageNotFoundError:
        return "torch int8 (PT2E) needs the torchao package (the torch extra)"
    try:
        get_cpp_compiler()
    except InvalidCxxCompiler as exc:
        return f"torch int8 runs through Inductor, which needs a C++ compiler: {exc}"
    headers = Path(sysconfig.get_path("include"))
    if not (headers / "Python.h").is_file():
        return f"Inductor's C++ kernels include Python.h, absent from {headers} (python3-dev)"
    return None


def program_entry(artifact: Artifact, batch_size: int, channels_last: bool) -> cache.Entry:
    """The cache entry of the quantized program of this artifact, batch size, memory format."""
    parts = [
        artifact.key[:16],
        f"b{batch_size}",
        "nhwc" if channels_last else "nchw",
        recipe_digest(),
        calibration_digest(artifact.inputs)[:16],
    ]
    return cache.entry("torch-int8", *parts)


def quantization_config() -> object:
    """X86InductorQuantizer's default static configuration, with this CPU's reduce_range."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    reduce_range = bool(recipe()["reduce_range"])
    return xiq.get_default_x86_inductor_quantization_config(reduce_range=reduce_range)


def quantize(model: torch.nn.Module, batches: list[torch.Tensor]) -> torch.fx.GraphModule:
    """The PT2E-quantized program of `model`, calibrated on `batches` (all of one shape)."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    try:
        captured = torch.export.export(model, (batches[0],), strict=True).module()
    except Exception as exc:  # export raises many types for a model it cannot capture
        raise Unsupported(f"torch.export cannot capture the model for PT2E: {exc}") from exc
    quantizer = xiq.X86InductorQuantizer().set_global(quantization_config())
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for batch in batches:
            prepared(batch)
    converted = convert_pt2e(prepared)
    move_exported_model_to_eval(converted)
    return converted


def quantized_program(
    build: Callable[[], torch.nn.Module],
    artifact: Artifact,
    batches: list[torch.Tensor],
    channels_last: bool,
) -> tuple[torch.nn.Module, Path, bool]:
    """The quantized program for these calibration batches (the artifact's inputs, in the
    model's memory format), cached: (program, path, reused?). `build` makes the float model;
    it is only called when the cache has no program."""
    entry = program_entry(artifact, len(batches[0]), channels_last)
    if found := entry.lookup():  # verified first: loading a program runs what it holds
        # The program's quantize/dequantize ops are torchao's: registered when it is imported,
        # which a fresh process (a later round, another cell) has not done yet.
        import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401

        return torch.export.load(str(found / PROGRAM_FILE)).module(), found / PROGRAM_FILE, True
    converted = quantize(build(), batches)
    with entry.build() as folder, open(folder / PROGRAM_FILE, "wb") as f:
        torch.export.save(torch.export.export(converted, (batches[0],)), f)
    return converted, entry.path / PROGRAM_FILE, False


def count_calls(code: str) -> tuple[dict[str, int], dict[str, int]]:
    """(int8 kernel calls, float conv/matmul kernel calls) in Inductor's generated code."""
    int8 = Counter(_INT8_CALL.findall(code))
    floating = Counter(a or b for a, b in _FLOAT_CALL.findall(code))
    return dict(sorted(int8.items())), dict(sorted(floating.items()))


def compile_int8(
    program: torch.nn.Module, example: torch.Tensor, mode: str | None
) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, int], dict[str, int]]:
    """Compile the quantized program with Inductor (freezing on), run it once on `example`,
    read the generated code back: (compiled, int8 kernel calls, float kernel calls). Later
    calls with the same shape, dtype and inference mode reuse this compilation."""
    # Importing the quantizer registers the Inductor passes that lower its Q/DQ patterns.
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401
    from torch._inductor import config
    from torch._inductor.utils import run_and_get_code

    compiled = torch.compile(program, mode=mode, dynamic=False)
    with config.patch(freezing=True), torch.inference_mode():
        _, codes = run_and_get_code(compiled, example)
    if not codes:
        raise Unsupported("Inductor generated no code to read back for the int8 program")
    int8, floating = count_calls("\n".join(codes))
    if not int8:
        raise Unsupported(
            "Inductor lowered the PT2E int8 program to no oneDNN int8 kernel on this CPU "
            f"(float kernels: {floating or 'none'}); it would run as fake-quantized fp32"
        )
    return compiled, int8, floating
