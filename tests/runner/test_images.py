"""What the images must carry, read from their Dockerfiles (no build: the torch images are
6.5 GB; the builds themselves are tested in test_docker.py)."""

from __future__ import annotations

import pytest

from bench.frameworks import FRAMEWORKS
from runner.images import IMAGES


def _final_stage(name: str) -> str:
    text = (IMAGES.get(name).dir / "Dockerfile").read_text()
    return text.rsplit("\nFROM ", 1)[1]


@pytest.mark.parametrize(
    "image",
    sorted(
        n
        for n in IMAGES
        if any(FRAMEWORKS.get(f).base == "torch" for f in IMAGES.get(n).frameworks)
    ),
)
def test_the_torch_images_run_inductor_and_triton_where_cells_run(image):
    """torch.compile at run time: Inductor's C++ kernels need g++, Triton's CUDA driver stub a
    C compiler (cc), both Python's headers — in the final stage, not only the build stage."""
    final = _final_stage(image)
    assert "apt-get install" in final and "g++" in final, f"{image}: no g++ in the final stage"
    assert "python3-dev" in final and "Python.h" in final, f"{image}: no Python headers"
    if IMAGES.get(image).device == "cuda":
        assert "gcc" in final, f"{image}: Triton needs a C compiler (cc)"
