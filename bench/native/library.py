"""The native library through ctypes: zero-copy NumPy buffers in, caller-owned buffers out.

Everything the C side would trust blindly is checked here first (dtype, memory layout, rank,
sample shape), so a wrong call is a Python `ValueError` with a clear message, never a crash.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

API_VERSION = 1  # DB_API_VERSION in deploybench.h
MAX_RANK = 8  # DB_MAX_RANK
ERR_LEN = 4096

_f32p = ctypes.POINTER(ctypes.c_float)
_i64p = ctypes.POINTER(ctypes.c_int64)


class NativeError(RuntimeError):
    """The framework refused or failed, with its own message."""


def _declare(lib: ctypes.CDLL) -> None:
    lib.db_api_version.restype = ctypes.c_int
    lib.db_framework_version.restype = ctypes.c_char_p
    lib.db_load.restype = ctypes.c_void_p
    lib.db_load.argtypes = [
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.db_infer.restype = ctypes.c_int
    lib.db_infer.argtypes = [
        ctypes.c_void_p, _f32p, _i64p, ctypes.c_int, ctypes.c_int,
        ctypes.POINTER(_f32p), _i64p, _i64p, ctypes.POINTER(ctypes.c_int),
        ctypes.c_char_p, ctypes.c_size_t,
    ]  # fmt: skip
    lib.db_runtime_info.restype = ctypes.c_int
    lib.db_runtime_info.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.db_free.restype = None
    lib.db_free.argtypes = [ctypes.c_void_p]


class NativeLibrary:
    """A loaded libdeploybench_<framework>.so."""

    def __init__(self, path: Path) -> None:
        self.lib = ctypes.CDLL(str(path))
        _declare(self.lib)
        if (version := self.lib.db_api_version()) != API_VERSION:
            raise NativeError(f"{path} has native API {version}, this bench calls {API_VERSION}")

    def framework_version(self) -> str:
        return self.lib.db_framework_version().decode()


@dataclass
class _CallArgs:
    shape: ctypes.Array
    capacity: ctypes.Array
    out_shapes: ctypes.Array
    out_ranks: ctypes.Array
    err: ctypes.Array


class NativeSession:
    """One loaded model. `sample_shape` is one input sample's shape (no batch axis) and
    `output_sample_shapes` each output's per-sample shape, in the model's output order."""

    def __init__(
        self,
        library: NativeLibrary,
        model_path: Path,
        threads: int,
        config: str,
        sample_shape: Sequence[int],
        output_sample_shapes: Sequence[Sequence[int]],
    ) -> None:
        self.lib = library.lib
        self.sample_shape = tuple(sample_shape)
        self.output_sample_shapes = [tuple(s) for s in output_sample_shapes]
        err = ctypes.create_string_buffer(ERR_LEN)
        handle = self.lib.db_load(str(model_path).encode(), threads, config.encode(), err, ERR_LEN)
        if not handle:
            raise NativeError(err.value.decode(errors="replace"))
        self.handle: int | None = handle
        self._args: dict[tuple[int, ...], _CallArgs] = {}

    def check_input(self, x: object) -> np.ndarray:
        """The input as the C side needs it, or a ValueError saying what is wrong."""
        if not isinstance(x, np.ndarray):
            raise ValueError(f"input must be a numpy array, not {type(x).__name__}")
        if x.dtype != np.float32:
            raise ValueError(f"input dtype must be float32, not {x.dtype}")
        if x.ndim != len(self.sample_shape) + 1 or x.shape[1:] != self.sample_shape:
            expected = ("batch", *self.sample_shape)
            raise ValueError(f"input shape must be {expected}, not {x.shape}")
        if x.shape[0] < 1:
            raise ValueError("input batch must not be empty")
        if not x.flags.c_contiguous:
            raise ValueError("input must be C-contiguous (np.ascontiguousarray)")
        return x

    def _call_args(self, shape: tuple[int, ...]) -> _CallArgs:
        """The ctypes arguments that depend only on the input's shape, made once per shape."""
        if (args := self._args.get(shape)) is None:
            n = len(self.output_sample_shapes)
            sizes = [shape[0] * int(np.prod(s)) for s in self.output_sample_shapes]
            args = self._args[shape] = _CallArgs(
                shape=(ctypes.c_int64 * len(shape))(*shape),
                capacity=(ctypes.c_int64 * n)(*sizes),
                out_shapes=(ctypes.c_int64 * (n * MAX_RANK))(),
                out_ranks=(ctypes.c_int * n)(),
                err=ctypes.create_string_buffer(ERR_LEN),
            )
        return args

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        """Run on `x` (read in place, not copied); returns new arrays, one per output."""
        if self.handle is None:
            raise NativeError("session is closed")
        x = self.check_input(x)
        batch = x.shape[0]
        outputs = [np.empty((batch, *s), np.float32) for s in self.output_sample_shapes]
        n = len(outputs)
        a = self._call_args(x.shape)
        pointers = (_f32p * n)(*(o.ctypes.data_as(_f32p) for o in outputs))
        rc = self.lib.db_infer(
            self.handle, x.ctypes.data_as(_f32p), a.shape, x.ndim, n, pointers, a.capacity,
            a.out_shapes, a.out_ranks, a.err, ERR_LEN,
        )  # fmt: skip
        if rc != 0:
            raise NativeError(a.err.value.decode(errors="replace"))
        for i, out in enumerate(outputs):
            got = tuple(a.out_shapes[i * MAX_RANK : i * MAX_RANK + a.out_ranks[i]])
            if got != out.shape:
                raise NativeError(f"output {i} has shape {got}, expected {out.shape}")
        return outputs

    def runtime_info(self) -> dict[str, object]:
        buf = ctypes.create_string_buffer(1 << 16)
        if self.lib.db_runtime_info(self.handle, buf, len(buf)) != 0:
            raise NativeError(buf.value.decode(errors="replace"))
        return json.loads(buf.value.decode())

    def close(self) -> None:
        if self.handle is not None:
            self.lib.db_free(self.handle)
            self.handle = None


def through_python_lists(x: np.ndarray) -> np.ndarray:
    """`x` as naive ctypes code hands it over: flattened to a Python list, every element
    converted into a new ctypes float array, which the library then reads (a NumPy view of it).
    The `marshal=lists` option of the ctypes variants, to measure what that way costs."""
    flat = (ctypes.c_float * x.size)(*x.ravel().tolist())
    return np.ctypeslib.as_array(flat).reshape(x.shape)
