"""PNG plots of twin runs: TTFT CDF per policy, per-endpoint load over time."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rastos.twin.records import SimResult

__all__ = ["plot_load", "plot_ttft_cdf"]


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ttft_cdf(results: dict[str, SimResult], path: Path, title: str) -> None:
    plt = _plt()
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for name, res in results.items():
        xs = np.sort([r.ttft * 1e3 for r in res.records if r.status == "ok" and not math.isnan(r.first_token)])
        if xs.size:
            ax.plot(xs, np.arange(1, xs.size + 1) / xs.size, label=name, linewidth=1.8)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("time to first token (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_load(results: dict[str, SimResult], path: Path) -> None:
    """Requests in each engine (running + waiting) over time, one panel per policy."""
    plt = _plt()
    n = len(results)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n + 0.6), dpi=110, sharex=True, squeeze=False)
    for ax, (name, res) in zip(axes[:, 0], results.items(), strict=True):
        if res.load_samples:
            t = np.array([s[0] for s in res.load_samples])
            loads = np.array([s[1] for s in res.load_samples]).T
            if loads.shape[0] <= 16:
                for i, row in enumerate(loads):
                    ax.plot(t, row, linewidth=0.9, label=f"ep {i}")
            else:  # many endpoints: the spread, not a line each
                ax.fill_between(t, loads.min(axis=0), loads.max(axis=0), alpha=0.3, label="min..max")
                ax.plot(t, loads.mean(axis=0), linewidth=1.2, label="mean")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("requests")
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("simulated time (s)")
    fig.suptitle("per-endpoint load (running + waiting requests)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
