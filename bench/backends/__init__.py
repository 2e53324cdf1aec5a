"""What runs the model: one module per framework behind one small interface.

Which frameworks exist, their backend module, devices, precisions, images and options are
one table, `bench.frameworks.FRAMEWORKS`; a backend module is imported only when a cell asks
for it, so an image imports its own framework and nothing else. `BACKENDS` is that table under
the name the backends' callers know.
"""

from __future__ import annotations

from bench.frameworks import FRAMEWORKS, Framework

BACKENDS = FRAMEWORKS
BackendEntry = Framework

__all__ = ["BACKENDS", "BackendEntry"]
