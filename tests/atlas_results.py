"""RIPE Atlas ping result objects in the documented format, for tests that need Atlas input."""

from __future__ import annotations


def ping(prb: int, dst: str, ts: int, rtts: list[float | None], fw: int = 4790) -> dict[str, object]:
    """One result object in the documented format (firmware >= 4400): a lost packet is {"x": "*"}."""
    got = [r for r in rtts if r is not None]
    obj: dict[str, object] = {
        "af": 6 if ":" in dst else 4,
        "dst_addr": dst,
        "dst_name": dst,
        "dup": 0,
        "from": "193.0.0.78",
        "fw": fw,
        "lts": 17,
        "msm_id": 1004005,
        "msm_name": "Ping",
        "prb_id": prb,
        "proto": "ICMP",
        "rcvd": len(got),
        "result": [{"rtt": r} if r is not None else {"x": "*"} for r in rtts],
        "sent": len(rtts),
        "size": 48,
        "src_addr": "10.0.2.15",
        "step": 240,
        "timestamp": ts,
        "ttl": 52,
        "type": "ping",
    }
    if got:
        obj.update(avg=round(sum(got) / len(got), 3), min=min(got), max=max(got))
    else:
        obj.update(avg=-1, min=-1, max=-1)
    return obj
