"""Why it went dark: a ranked list of causes, with evidence, for one outage.

The rules (deterministic; S is the outage start, one bin = [outage] bin_s):

1. **Routes first** — the BGP signal (``bgp``/``bgp_peers``) alerted no later
   than any traffic or probing signal, and the entity's prefixes were
   withdrawn around S: ``routing_withdrawal`` (0.9), or ``upstream_outage``
   (0.9) when the upstream AS of the entity's last AS paths lost at least
   half of its own visible prefixes at the same time (named either way:
   "AS4837 still visible" / "AS4837's routes gone too").
2. **Attack** — otherwise, an attack on the entity is running at S (started
   before S + 1 bin, ended after S − ``attack_gap_s``), or traffic toward the
   entity surged (``surge_factor`` × the day before) while probes failed and
   routes stayed up: ``ddos`` (0.8).
3. **Collapse** — otherwise traffic or probes collapsed with no attack near S
   and no instability before: ``infrastructure`` (0.7), whether or not routes
   followed later.
4. **Flapping** — otherwise ``min_flaps`` withdraw/announce cycles in the
   ``instability_s`` before S: ``instability`` (0.6).
5. Else ``unknown`` (0.5): the evidence does not separate the causes.

Contributing causes are kept after the main one: ``ddos`` for the campaign
leading to S (its last attack ran until at most ``attack_recent_s`` before S;
earlier attacks join while less than ``campaign_gap_s`` apart: "4 days of DDoS"
counts calendar days) and for attacks overlapping the loss — 0.5 when an attack
overlapped the loss (ran at some time from S − ``attack_gap_s`` to its end,
started during it included), 0.3 when the campaign only preceded it —
``instability`` (0.5) for flapping; a withdrawal with neither gets
``infrastructure`` as the alternative (0.3), since a power or equipment failure
at the origin looks the same from outside.  The main cause's first evidence
item (signal ``summary``) is the sentence a reader gets; every evidence item
appears once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import register_section
from .evidence import (
    DAY_US,
    US,
    EntityHistory,
    attack_end,
    campaign,
    day,
    entity_attacks,
    flaps,
    gbps,
    overlapping,
    plural,
    span,
    surge,
    upstream_before,
    withdrawal_at,
)

SOURCE = {"bgp": "bgp", "bgp_peers": "bgp", "probing_up": "probing", "probing_share": "probing"}


@dataclasses.dataclass
class VerdictConfig:
    """[explain] section: the windows and thresholds of the rules in blackout.explain.verdict."""

    bin_s: float = 60.0  # set from [outage] bin_s by the attributor: tolerance when ordering signals
    attack_gap_s: float = 600.0  # an attack ended this little before the loss still overlaps it
    attack_recent_s: float = 86400.0  # a campaign contributes if its last attack ran until this close to the loss
    campaign_gap_s: float = 86400.0  # attacks less than this apart are one campaign
    instability_s: float = 72 * 3600.0  # flaps counted this long before the loss
    min_flaps: int = 3  # this many withdraw/announce cycles make instability
    surge_factor: float = 3.0  # traffic toward the entity this many times the day before is a surge
    upstream_lost: float = 0.5  # the upstream lost more than this share of its visible prefixes


register_section("explain", VerdictConfig)


def _ev(signal: str, time_us: int | None, value: float | None, source: str, text: str) -> dict[str, Any]:
    return {"signal": signal, "time": time_us, "value": value, "source": source, "text": text}


def judge(
    rec: dict[str, Any],
    alerts: dict[str, Any],
    hist: EntityHistory,
    attacks: list[dict[str, Any]],
    cfg: VerdictConfig,
) -> dict[str, Any]:
    """The verdict of one outage record: {causes: [{cause, confidence, evidence}]}, main cause first."""
    start = int(rec["start"])
    bin_us = int(cfg.bin_s * US)
    first = {name: a.first_us for name, a in alerts.items()}
    bgp_first = min((t for s, t in first.items() if SOURCE.get(s) == "bgp"), default=None)
    other_first = min((t for s, t in first.items() if SOURCE.get(s) != "bgp"), default=None)
    signal_ev = [
        _ev(a.signal, a.worst_us, a.worst_value, SOURCE.get(a.signal, "traffic"), _alert_text(a))
        for a in sorted(alerts.values(), key=lambda a: (a.first_us, a.signal))
    ]

    mine = entity_attacks(attacks, rec["entity_type"], rec["entity"])
    recent = campaign(mine, start + bin_us, int(cfg.attack_recent_s * US), int(cfg.campaign_gap_s * US))
    running = [a for a in recent if attack_end(a, start) >= start - cfg.attack_gap_s * US]
    # an attack overlapping the loss (running at S, or starting while the entity was dark) weighs more
    # than a campaign that merely preceded it
    overlap = overlapping(mine, start - int(cfg.attack_gap_s * US), _loss_end(rec, start, bin_us))
    n_flaps, flap_from = flaps(hist.changes, start - int(cfg.instability_s * US), start)
    unstable = n_flaps >= cfg.min_flaps
    wd = withdrawal_at(hist.changes, start - 2 * bin_us, start + 2 * bin_us)

    causes: list[dict[str, Any]] = []
    routes_first = bgp_first is not None and (other_first is None or bgp_first <= other_first + bin_us)
    probes_failing = any(SOURCE.get(s) == "probing" for s in first)
    surged = surge(hist.series.get("traffic_in_bytes", []), start, DAY_US, cfg.surge_factor)
    if routes_first and wd is not None:
        causes.append(_routing(rec, hist, wd, start, cfg) | {"confidence": 0.9})
    elif running or (surged and probes_failing and bgp_first is None):
        causes.append(_ddos(recent, running, surged, start, 0.8))
    elif (other_first is not None) and not running and not unstable:
        later = "; routes followed later" if bgp_first is not None else "; routes stayed up"
        text = f"traffic and probes collapsed with no attack and no instability before{later}"
        causes.append(
            {"cause": "infrastructure", "confidence": 0.7, "evidence": [_ev("summary", start, None, "blackout", text)]}
        )
    elif unstable:
        causes.append(_instability(n_flaps, flap_from, start, 0.6))
    else:
        text = "the signals do not separate attack, withdrawal and infrastructure failure"
        causes.append(
            {"cause": "unknown", "confidence": 0.5, "evidence": [_ev("summary", start, None, "blackout", text)]}
        )
    main = causes[0]["cause"]
    if (recent or overlap) and main != "ddos":
        campaign_or_overlap = sorted({a["id"]: a for a in recent + overlap}.values(), key=_by_start)
        causes.append(_ddos(campaign_or_overlap, overlap, surged, start, 0.5 if overlap else 0.3))
    if unstable and main != "instability":
        causes.append(_instability(n_flaps, flap_from, start, 0.5))
    if main in ("routing_withdrawal", "upstream_outage") and not recent and not overlap and not unstable:
        text = "no attack and no instability before the withdrawal: a power or equipment failure looks the same"
        causes.append(
            {"cause": "infrastructure", "confidence": 0.3, "evidence": [_ev("summary", start, None, "blackout", text)]}
        )
    summary = _ev("summary", start, None, "blackout", sentence(causes))
    # the main cause's own summary item (infrastructure, unknown) is the sentence's head: once is enough
    own = [e for e in causes[0]["evidence"] if e["signal"] != "summary"]
    causes[0]["evidence"] = _unique([summary, *own, *signal_ev])
    return {"causes": causes}


def _loss_end(rec: dict[str, Any], start: int, bin_us: int) -> int:
    """When the loss ended, or (still going) the start plus one bin: attacks up to then overlap it."""
    end = rec.get("end")
    return int(end) if end is not None else start + bin_us


def _by_start(attack: dict[str, Any]) -> tuple[int, str]:
    return int(attack["start"]), str(attack["target"])


def _unique(evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evidence items in order, each (signal, time, value, source, text) once."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for e in evidence:
        key = (e["signal"], e["time"], e["value"], e["source"], e["text"])
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def _alert_text(alert: Any) -> str:
    return f"{alert.signal} fell {alert.worst_drop:.0f} % (to {alert.worst_value:g} from {alert.worst_history:g})"


def _routing(
    rec: dict[str, Any], hist: EntityHistory, wd: dict[str, Any], start: int, cfg: VerdictConfig
) -> dict[str, Any]:
    prefixes = wd["prefixes"]
    origins = sorted({hist.origins[p] for p in prefixes if p in hist.origins})
    owner = "/".join(f"AS{o}" for o in origins) or f"{rec['entity_type']} {rec['entity']}"
    up = int(wd["upstream"])
    before = upstream_before(hist.changes, up, start - 2 * int(cfg.bin_s * US)) if up else -1
    during = int(wd["upstream_visible"])
    lost = up and before > 0 and during >= 0 and during < (1 - cfg.upstream_lost) * before
    what = f"{owner}'s {plural(len(prefixes), 'prefix')}"
    evidence = [
        _ev(
            "routes",
            wd["time"],
            float(len(prefixes)),
            "bgp",
            f"{wd['withdrawals']} withdrawals of {what} by {plural(wd['peers'], 'peer')}: {', '.join(prefixes)}",
        ),
    ]
    if up:
        state = (
            f"AS{up}'s routes gone too ({during} of {before} prefixes visible)"
            if lost
            else f"AS{up} still visible ({during} prefixes)"
        )
        evidence.append(_ev("upstream", wd["time"], float(during), "bgp", state))
    cause = "upstream_outage" if lost else "routing_withdrawal"
    head = f"upstream outage: AS{up} lost its routes, taking {what}" if lost else f"routing withdrawal of {what}"
    if up and not lost:
        head += f" (AS{up} still visible)"
    return {"cause": cause, "evidence": evidence, "head": head}


def _ddos(
    recent: list[dict[str, Any]], overlap: list[dict[str, Any]], surged: Any, start: int, conf: float
) -> dict[str, Any]:
    evidence = []
    head = "DDoS"
    if recent:
        peak = max(recent, key=lambda a: (a.get("peak_bps") or 0.0, -a["start"]))
        first = int(recent[0]["start"])
        # "4 days of DDoS"; an attack that began with the loss (within a minute) is just "DDoS"
        lead = f"{span(first, start)} of DDoS" if start - first >= 60 * US else "DDoS"
        lead = "DDoS during the loss" if first > start else lead
        head = f"{lead} peaking at {gbps(peak.get('peak_bps') or 0.0)}"
        if overlap:
            head += f" ({plural(len(overlap), 'attack')} overlapping the loss)"
        evidence.append(
            _ev(
                "attacks",
                recent[0]["start"],
                float(len(recent)),
                "ddos",
                f"{plural(len(recent), 'attack')} on the entity since {day(recent[0]['start'])}",
            )
        )
        evidence.append(
            _ev(
                "peak_bps",
                peak.get("peak_bps_at") or peak["start"],
                peak.get("peak_bps"),
                "ddos",
                f"peak {gbps(peak.get('peak_bps') or 0.0)} on {peak['target']} ({day(peak['start'])})",
            )
        )
        for a in overlap:
            evidence.append(
                _ev(
                    "attack",
                    a["start"],
                    a.get("peak_bps"),
                    "ddos",
                    f"attack on {a['target']} overlapping the loss (id {a['id']})",
                )
            )
    if surged:
        evidence.append(
            _ev(
                "traffic_in_bytes",
                start,
                surged[0],
                "traffic",
                f"traffic toward the entity {surged[0] / max(surged[1], 1.0):.1f}x the day before",
            )
        )
    return {"cause": "ddos", "confidence": conf, "evidence": evidence, "head": head}


def _instability(n: int, first: int | None, start: int, conf: float) -> dict[str, Any]:
    head = f"{span(first or start, start)} of instability ({plural(n, 'flap')})"
    return {
        "cause": "instability",
        "confidence": conf,
        "head": head,
        "evidence": [
            _ev(
                "flaps",
                first,
                float(n),
                "bgp",
                f"{n} withdraw/announce cycles of the entity's prefixes since {day(first or start)}",
            )
        ],
    }


def sentence(causes: list[dict[str, Any]]) -> str:
    """'routing withdrawal of AS131279's 4 prefixes (AS4837 still visible), after 4 days of DDoS ... and ...'."""
    heads = [
        c.pop("head", None) or c["evidence"][0]["text"]
        for c in causes
        if c["confidence"] >= 0.5 or c["cause"] != "infrastructure"
    ]
    main, rest = heads[0], heads[1:]
    if not rest:
        return main
    return (
        f"{main}, after {' and '.join(rest)}"
        if len(rest) < 3
        else f"{main}, after {', '.join(rest[:-1])} and {rest[-1]}"
    )
