"""Arrow columns as numpy arrays, without pandas: the conversions the columnar reader
(:mod:`leaderboard.data.formats.columnar`) and the columnar import
(:mod:`leaderboard.data.import_columns`) share."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def arrow_mask(expr: Any, *, missing: bool) -> np.ndarray:
    """A boolean arrow result as numpy, a missing value counting as ``missing``."""
    return arrow_numpy(expr, bool, missing)


_CASTS = {bool: pa.uint8(), np.int64: pa.int64(), np.float64: pa.float64()}


def arrow_numpy(values: pa.Array | pa.ChunkedArray, dtype: Any, fill: Any) -> np.ndarray:
    """An arrow column as a new numpy array of ``dtype`` (bool, int64 or float64), ``fill`` for
    a missing value. Not by ``to_numpy`` nor ``fill_null`` with a Python value: both import
    pandas, half a second of ``rank``'s start."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    arr = pc.cast(arr, _CASTS[dtype], safe=False)
    n, start = len(arr), arr.offset
    if not n:
        return np.zeros(0, dtype=dtype)
    data = np.frombuffer(arr.buffers()[1], dtype=_CASTS[dtype].to_pandas_dtype())
    out = data[start : start + n].astype(dtype)
    if arr.null_count:
        bits = np.unpackbits(np.frombuffer(arr.buffers()[0], dtype=np.uint8), bitorder="little")
        out[~bits[start : start + n].astype(bool)] = fill
    return out


def arrow_is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def arrow_encode(col: pa.ChunkedArray) -> tuple[np.ndarray, list[Any]]:
    """A text column as (codes, values): ``values[codes[i]]`` is row i, code -1 a missing value.
    Only the distinct values become Python strings."""
    if pa.types.is_null(col.type):
        return np.full(len(col), -1, dtype=np.int64), []
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    arr = col.unify_dictionaries().combine_chunks() if col.num_chunks else col.combine_chunks()
    codes = arrow_numpy(arr.indices, np.int64, -1)
    return codes, arr.dictionary.to_pylist()
