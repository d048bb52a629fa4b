"""A fast ``dataframe_split``/``dataframe_records`` -> DataFrame for all-numeric signatures.

MLflow builds the DataFrame with ``pandas.DataFrame(...)`` column by column and then
casts each signature column with ``astype`` (``cast_df_types_according_to_schema``).
For a signature whose columns all have one float or long type, and a request that
names exactly the signature's columns and holds only numbers, one ``numpy.array`` of
the rows cast to that type gives the same values; the DataFrame is then built from
that one block. Anything else (strings, None, nested values, bools only,
missing or extra columns, mixed integer targets) returns None and MLflow's
own parser runs. The DataFrame's columns are in the signature's order (the order
MLflow's schema enforcement produces), so the fast predict path can use it as is.

One deliberate difference, for scikit-learn models only: under pandas 3 the column
labels are an ``object`` Index, not pandas 3's default ``str`` Index. scikit-learn reads
the labels as ``numpy.asarray(columns, dtype=object)`` either way, so its predictions are
the same; iterating an Arrow-backed ``str`` Index makes up over a tenth of a small
model's whole request. Under pandas 2 both are ``object``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_FLOATS = ("float64", "float32")
_MAX_CACHED_ORDERS = 64
OBJECT_LABELS = frozenset({"mlflow.sklearn"})
"""Loaders whose models read column labels only as Python strings."""


@dataclass(frozen=True)
class FastFrame:
    order: tuple[str, ...]
    """The signature's column names, in the signature's order."""
    names: frozenset[str]
    dtype: Any
    """The numpy dtype every signature column has."""
    columns: Any
    """``pandas.Index(order)``, built once: from strings it costs more than the rest of the frame."""
    permutations: dict[tuple[str, ...], Any] = field(default_factory=dict, compare=False, repr=False)
    """Column orders seen in requests -> the column indices that put them in signature order."""

    @classmethod
    def prepare(cls, schema: Any, *, loader_module: str | None = None) -> FastFrame | None:
        """A FastFrame for a ColSpec schema whose named columns all share a float or long type.

        ``loader_module``: the pyfunc loader; ``mlflow.sklearn`` gets ``object`` column labels.
        """
        try:
            import numpy as np
            from mlflow.types.schema import ColSpec, DataType
        except ImportError:
            return None
        if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
            return None
        inputs = schema.inputs
        if not all(isinstance(s, ColSpec) and isinstance(s.type, DataType) for s in inputs):
            return None
        types = {s.type for s in inputs}
        if len(types) != 1:
            return None
        dtype = np.dtype(next(iter(types)).to_numpy())
        if dtype.name not in (*_FLOATS, "int64"):
            return None
        order = tuple(s.name for s in inputs)
        if len(set(order)) != len(order):
            return None
        import pandas as pd

        labels = pd.Index(list(order), dtype=object if loader_module in OBJECT_LABELS else None)
        return cls(order=order, names=frozenset(order), dtype=dtype, columns=labels)

    def split(self, value: Any) -> Any:
        """The DataFrame for a ``dataframe_split`` value, or None to let MLflow parse it."""
        if type(value) is not dict:
            return None
        columns = value.get("columns")
        data = value.get("data")
        index = value.get("index")
        if len(value) != (3 if "index" in value else 2):
            return None
        if (
            type(columns) is not list
            or type(data) is not list
            or (index is not None and type(index) is not list)
        ):
            return None
        if len(columns) != len(self.order) or set(columns) != self.names:
            return None
        return self._frame(data, columns, index)

    def records(self, value: Any) -> Any:
        """The DataFrame for a ``dataframe_records`` value, or None to let MLflow parse it."""
        if type(value) is not list or not value or type(value[0]) is not dict:
            return None
        columns = list(value[0])
        if len(columns) != len(self.order) or set(columns) != self.names:
            return None
        rows = []
        count = len(self.order)
        try:
            for record in value:
                if type(record) is not dict or len(record) != count:
                    return None
                rows.append([record[c] for c in columns])
        except KeyError:
            return None
        return self._frame(rows, columns)

    def _frame(self, rows: list[Any], columns: list[str], index: list[Any] | None = None) -> Any:
        import numpy as np
        import pandas as pd

        if not rows:
            return None
        try:
            array = np.array(rows)
        except (ValueError, TypeError):
            return None
        if array.ndim != 2 or array.shape[1] != len(self.order):
            return None
        kind = array.dtype
        if kind == np.float64:
            if self.dtype.name not in _FLOATS:
                return None  # floats into a long column: MLflow's per-column cast decides
        elif kind != np.int64:
            return None
        key = tuple(columns)
        if key != self.order:
            permutation = self.permutations.get(key)
            if permutation is None:
                permutation = np.array([key.index(name) for name in self.order])
                if len(self.permutations) < _MAX_CACHED_ORDERS:
                    self.permutations[key] = permutation
            array = array[:, permutation]
        try:
            return pd.DataFrame(array.astype(self.dtype, copy=False), columns=self.columns, index=index)
        except (ValueError, TypeError):  # e.g. an index of the wrong length: MLflow's error
            return None
