"""The results table: one row per point (the swept values, status, metrics), written as Parquet and CSV.

The table holds no wall-clock figure, so the same sweep gives the same table on one machine or a cluster.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from archsim.errors import UsageError
from archsim.sweep.plan import canonical
from archsim.sweep.worker import METRICS

RESULTS = "results"  # results.parquet and results.csv


def columns(keys: Sequence[str]) -> list[str]:
    return ["index", "id", *keys, "status", "error", *METRICS]


def _cell(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else canonical(value)


def build_rows(logged: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Table rows from logged points, by index; the swept values are spread into one column per key."""
    rows = []
    for rec in sorted(logged, key=lambda r: int(r["index"])):
        values = rec.get("values", {})
        row = {"index": int(rec["index"]), "id": rec["id"]}
        row.update({k: _cell(values.get(k)) for k in keys})
        row.update(status=rec.get("status", "ok"), error=rec.get("error", ""))
        row.update({m: rec.get(m) for m in METRICS})
        rows.append(row)
    return rows


def _uniform(rows: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Columns of one type for Parquet: a swept column that mixes types (8, "auto") becomes text."""
    out = [dict(r) for r in rows]
    for k in keys:
        kinds = {type(r[k]) for r in rows if r[k] is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:
            for r in out:
                r[k] = None if r[k] is None else canonical(r[k]) if not isinstance(r[k], str) else r[k]
    return out


def write_table(rows: list[dict[str, Any]], keys: Sequence[str], folder: Path) -> tuple[Path, Path]:
    """results.parquet and results.csv in ``folder``, each written whole then moved into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = columns(keys)
    parquet, text = folder / f"{RESULTS}.parquet", folder / f"{RESULTS}.csv"
    table = pa.Table.from_pylist(_uniform(rows, keys), schema=None) if rows else pa.table({c: [] for c in cols})
    table = table.select(cols) if rows else table
    tmp = parquet.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, parquet)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: ("" if r[c] is None else r[c]) for c in cols})
    tmp = text.with_suffix(".csv.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, text)
    return parquet, text


def read_table(folder: Path) -> list[dict[str, Any]]:
    """The rows of ``folder``/results.parquet (for ``--report``)."""
    import pyarrow.parquet as pq

    path = folder / f"{RESULTS}.parquet"
    if not path.exists():
        raise UsageError(f"--report {folder}: no {path.name} here (run the sweep first)")
    try:
        return list(pq.read_table(path).to_pylist())
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise UsageError(f"--report {folder}: cannot read {path.name} ({' '.join(str(exc).split())})") from None


__all__ = ["RESULTS", "build_rows", "columns", "read_table", "write_table"]
