"""The timeline plot of a report: the entity's signals, its outages and the attacks on it.

matplotlib with the Agg backend (no display needed), one figure written as
PNG and SVG; each signal is scaled to its own maximum so BGP /24 counts,
bytes and probe shares share one axis.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

LABEL_MIN = 20  # outages at least this long (minutes) are labelled with their cause
SIGNALS = ("bgp", "traffic_in_bytes", "traffic_out_packets", "probing_share")


def _t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def timeline(report: dict[str, Any], signals: pa.Table, attacks: list[dict[str, Any]], fmt: str = "png") -> bytes:
    """The plot as PNG or SVG bytes: normalised signals, outages shaded, attacks as bars of their peak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = _t(report["from"]), _t(report["to"])
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, height_ratios=(2, 1))
    for name in SIGNALS:
        part = signals.filter(pc.equal(signals.column("signal"), name)) if signals.num_rows else signals
        if part.num_rows == 0:
            continue
        ts = [t.replace(tzinfo=dt.UTC) for t in part.column("ts").to_pylist()]
        vals = part.column("value").to_numpy()
        top = float(vals.max()) or 1.0
        ax.plot(ts, vals / top, lw=0.8, label=f"{name} (max {top:,.0f})")
    for o in report["outages"]:  # short ones (a bin or two of sparse traffic) faint and unlabelled
        end = _t(o["end"]) if o["end"] else hi
        long = (end - _t(o["start"])) >= dt.timedelta(minutes=LABEL_MIN)
        ax.axvspan(_t(o["start"]), end, color="red", alpha=0.25 if long else 0.04, lw=0)
        if long:
            ax.annotate(o["cause"], (_t(o["start"]), 1.02), fontsize=7, rotation=20)
    for a in attacks:
        start = _t(a["start"])
        end = _t(a["end"]) if a.get("end") else start
        ax2.plot([start, max(end, start)], [(a.get("peak_bps") or 0) / 1e9] * 2, lw=4, solid_capstyle="butt")
    ax.set_ylabel("signal / its max")
    ax.set_ylim(0, 1.15)
    if ax.get_lines():
        ax.legend(loc="lower left", fontsize=7)
    ax.set_title(f"{report['entity_type']} {report['entity']}: signals, outages (red) and attacks")
    ax2.set_ylabel("attack peak (Gbps)")
    ax2.set_xlim(lo, hi)
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100)
    plt.close(fig)
    return buf.getvalue()
