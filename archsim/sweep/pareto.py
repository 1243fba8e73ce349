"""The Pareto set of a sweep (no point better in every objective) and its plot: latency against energy, coloured by
a swept key, the Pareto points ringed and the latency-energy front drawn."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from archsim.sweep.spec import MAXIMISE


def _matrix(rows: Sequence[dict[str, Any]], objectives: Sequence[str]) -> np.ndarray:
    """One row per point, one column per objective, signed so that smaller is better."""
    return np.array([[(-1.0 if o in MAXIMISE else 1.0) * float(r[o]) for o in objectives] for r in rows],
                    dtype=float).reshape(len(rows), len(objectives))


def pareto_set(rows: Sequence[dict[str, Any]], objectives: Sequence[str]) -> list[int]:
    """Indices (into ``rows``) of the successful points that no other successful point dominates (at least as good
    in every objective and better in one). Equal points are all kept."""
    ok = [i for i, r in enumerate(rows) if r.get("status") == "ok" and all(r.get(o) is not None for o in objectives)]
    if not ok:
        return []
    m = _matrix([rows[i] for i in ok], objectives)
    keep = []
    for j in range(len(ok)):
        no_worse = np.all(m <= m[j], axis=1)
        better = np.any(m < m[j], axis=1)
        if not np.any(no_worse & better):
            keep.append(ok[j])
    return keep


def plot(rows: Sequence[dict[str, Any]], front: Sequence[int], color: str | None, path: Path, title: str,
         x: str = "latency_ms", y: str = "energy_uj_per_inference") -> Path:
    """Scatter of the successful points (x against y), coloured by ``color``, Pareto points ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    xs = np.array([float(r[x]) for r in ok])
    ys = np.array([float(r[y]) for r in ok])
    if color is not None and ok:
        raw = [r.get(color) for r in ok]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
        if numeric:
            sc = ax.scatter(xs, ys, c=[float(v or 0) for v in raw], cmap="viridis", s=28, zorder=2)
            fig.colorbar(sc, ax=ax, label=color)
        else:
            labels = sorted({str(v) for v in raw})
            cmap = plt.get_cmap("tab10")
            for i, label in enumerate(labels):
                sel = [str(v) == label for v in raw]
                ax.scatter(xs[sel], ys[sel], s=28, color=cmap(i % 10), label=label, zorder=2)
            ax.legend(title=color, fontsize=8)  # redrawn below with the Pareto ring when there is a front
    else:
        ax.scatter(xs, ys, s=28, zorder=2)
    fr = [rows[i] for i in front]
    if fr:
        ax.scatter([float(r[x]) for r in fr], [float(r[y]) for r in fr], s=90, facecolors="none",
                   edgecolors="black", linewidths=1.2, label="Pareto set", zorder=3)
        two_d = sorted((fr[i] for i in pareto_set(fr, (x, y))), key=lambda r: float(r[x]))
        ax.step([float(r[x]) for r in two_d], [float(r[y]) for r in two_d], where="post", color="black",
                linewidth=0.8, zorder=1, label=f"front of {x} and {y}")
        ax.legend(fontsize=8, loc="best")
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def markdown(rows: Sequence[dict[str, Any]], front: Sequence[int], keys: Sequence[str],
             objectives: Sequence[str]) -> str:
    """The Pareto set as a Markdown table, sorted by the first objective."""
    cols = ["index", *keys, *objectives]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" for _ in cols) + "|"]
    for r in sorted((rows[i] for i in front), key=lambda r: float(r[objectives[0]])):
        cells = [_fmt(r.get(c)) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


__all__ = ["markdown", "pareto_set", "plot"]
