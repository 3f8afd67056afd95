"""Self-contained HTML report of a demo run: no network, no external files.

Sections: the per-agency decision table (who received reads, who was refused and by which rule),
sample frames with plate boxes and reads, a timeline of reads and decisions, and the audit chain's
verification. Images are embedded as base64 JPEG data URIs; the timeline is inline SVG.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

import cv2
import numpy as np


@dataclass(frozen=True)
class AgencyRow:
    agency_id: str
    name: str
    kind: str
    jurisdiction: str
    forwarded: int
    refused: int
    rules: tuple[str, ...]  # the rule(s) that decided, e.g. ("allow:in-state-public",)
    received: int | None = None  # what the agency's receiver stored (its own login, `agency receive`)


@dataclass(frozen=True)
class SampleFrame:
    camera_id: str
    image: np.ndarray  # BGR uint8
    boxes: np.ndarray  # (N, 4) x1 y1 x2 y2
    labels: Sequence[str]  # text drawn next to each box


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    camera_id: str
    plate: str
    forwarded_to: tuple[str, ...]
    refused_for: tuple[str, ...]


@dataclass
class DemoReport:
    title: str
    policy: str
    started_at: datetime
    finished_at: datetime
    broker: str
    reads_published: int
    leaks: int | None  # None: not measured (a report from an audit log alone, `audit summary --html`)
    audit_verified: bool
    audit_records: int
    audit_detail: str
    agencies: list[AgencyRow]
    samples: list[SampleFrame] = field(default_factory=list)
    timeline: list[TimelineEvent] = field(default_factory=list)
    # agency-side searches after the run (dicts as DemoResult.agency_searches) and their access log
    agency_searches: list[dict] = field(default_factory=list)
    access_log_intact: bool = True


def _jpeg_data_uri(image: np.ndarray, max_width: int = 960, quality: int = 80) -> str:
    h, w = image.shape[:2]
    if w > max_width:
        image = cv2.resize(image, (max_width, int(h * max_width / w)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode a sample frame as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def annotate(sample: SampleFrame) -> np.ndarray:
    img = sample.image.copy()
    scale = max(1, img.shape[1] // 640)
    for (x1, y1, x2, y2), label in zip(np.asarray(sample.boxes).reshape(-1, 4).astype(int), sample.labels):
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), 2 * scale)
        org = (x1, max(0, y1 - 6 * scale))
        cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), 4 * scale, cv2.LINE_AA)
        cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 255, 0), 1 * scale + 1, cv2.LINE_AA)
    return img


def _timeline_svg(report: DemoReport) -> str:
    events = sorted(report.timeline, key=lambda e: e.at)
    if not events:
        return "<p>No reads.</p>"
    cameras = sorted({e.camera_id for e in events})
    t0 = events[0].at.timestamp()
    span = max(events[-1].at.timestamp() - t0, 1e-3)
    width, lane_h, left = 900, 34, 110
    height = lane_h * len(cameras) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + left + 20}" height="{height}" role="img">']
    for i, cam in enumerate(cameras):
        y = 15 + i * lane_h + lane_h // 2
        parts.append(f'<text x="4" y="{y + 4}" font-size="12">{html.escape(cam)}</text>')
        parts.append(f'<line x1="{left}" y1="{y}" x2="{left + width}" y2="{y}" stroke="#ccc"/>')
    for e in events:
        x = left + width * (e.at.timestamp() - t0) / span
        y = 15 + cameras.index(e.camera_id) * lane_h + lane_h // 2
        colour = "#2a7" if e.forwarded_to else "#c33"
        tip = (
            f"{e.at.isoformat()} {e.plate} -> forwarded: {', '.join(e.forwarded_to) or 'none'}; "
            f"refused: {', '.join(e.refused_for) or 'none'}"
        )
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="{colour}"><title>{html.escape(tip)}</title></circle>'
        )
    parts.append(
        f'<text x="{left}" y="{height - 4}" font-size="11">{html.escape(events[0].at.strftime("%H:%M:%S"))}</text>'
        f'<text x="{left + width - 60}" y="{height - 4}" font-size="11">'
        f'{html.escape(events[-1].at.strftime("%H:%M:%S"))}</text></svg>'
    )
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:14px} td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
th{background:#f3f3f3} .ok{color:#176b3a;font-weight:600} .bad{color:#b3261e;font-weight:600}
.frames{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0} figure img{max-width:560px;border:1px solid #999}
figcaption{font-size:12px;color:#555} .meta{color:#555;font-size:13px} code{background:#f5f5f5;padding:1px 4px}
"""


def _rule_names(rules: Sequence[str]) -> set[str]:
    """The rule names in AgencyRow.rules: plain names, or 'rule x7, other x2' as the demo's tables."""
    names = set()
    for text in rules:
        for part in text.split(","):
            part = part.strip()
            head, _, count = part.rpartition(" x")
            name = head if head and count.isdigit() else part
            if name:
                names.add(name)
    return names


def outcome(a: AgencyRow) -> tuple[str, str]:
    """(words, css class) for the agency's row: what the policy decided for it. A refusal by a
    message-level rule (refuse:malformed, refuse:camera-topic-mismatch: the gate refuses such a
    message for every agency) says nothing about the agency; before, an allowed agency that got no
    read (footage without a readable plate, --synthetic-reads 0) was shown 'refused' in red."""
    from edge.policy import policy as p

    names = _rule_names(a.rules)
    if a.forwarded or any(n.startswith("allow:") for n in names):
        return "receives reads", "ok"
    policy_refusals = {p.REFUSE_UNKNOWN_AGENCY, p.REFUSE_UNKNOWN_PURPOSE, p.REFUSE_PURPOSE, p.REFUSE_KIND,
                       p.REFUSE_JURISDICTION, p.REFUSE_ON_BEHALF, p.REFUSE_POLICY_ERROR}
    if names & policy_refusals:
        return "refused", "bad"
    return "no read decided", "meta"


def render_html(report: DemoReport) -> str:
    esc = html.escape
    rows = []
    for a in report.agencies:
        words, cls = outcome(a)
        received = "" if a.received is None else str(a.received)
        rows.append(
            "<tr>"
            f"<td>{esc(a.agency_id)}</td><td>{esc(a.name)}</td><td>{esc(a.kind)}</td><td>{esc(a.jurisdiction)}</td>"
            f"<td>{a.forwarded}</td><td>{a.refused}</td><td>{esc(received)}</td>"
            f'<td class="{cls}">{esc(words)}</td><td><code>{esc(", ".join(a.rules))}</code></td>'
            "</tr>"
        )
    figures = []
    for s in report.samples:
        figures.append(
            f'<figure><img alt="frame from {esc(s.camera_id)}" src="{_jpeg_data_uri(annotate(s))}">'
            f"<figcaption>{esc(s.camera_id)}: {esc(', '.join(s.labels) or 'no plate')}</figcaption></figure>"
        )
    searches = []
    for q in report.agency_searches:
        cls, told = ("ok", f"{q['reads']} read(s)") if q["answered"] else ("bad", f"refused: {q['reason']}")
        searches.append(
            f"<tr><td>{q['access_log_entry']}</td><td>{esc(q['agency'])}</td><td>{esc(q['user'])}</td>"
            f"<td>{esc(q['plate'])}</td><td>{esc(q['purpose'])}</td><td>{esc(q['on_behalf_of'] or '')}</td>"
            f'<td class="{cls}">{esc(told)}</td></tr>')
    search_section = "" if not searches else f"""<h2>Searches at the agency (access log)</h2>
<p class="meta">After the run, staff of an agency that received reads search its inbox (<code>alpr-edge agency
search</code>): every search names a user and a purpose, is checked against the policy and is logged,
answered or refused. Access log: <span class="{'ok' if report.access_log_intact else 'bad'}">{
'intact' if report.access_log_intact else 'BROKEN'}</span>.</p>
<table id="searches"><thead><tr><th>entry</th><th>agency</th><th>user</th><th>plate</th><th>purpose</th>
<th>on behalf of</th><th>answer</th></tr></thead><tbody>{''.join(searches)}</tbody></table>
"""
    audit_cls = "ok" if report.audit_verified else "bad"
    audit_word = "verified" if report.audit_verified else "FAILED"
    leak_cls = "ok" if report.leaks == 0 else "bad" if report.leaks else "meta"
    leaks = report.leaks if report.leaks is not None else "not measured (the audit log alone cannot see deliveries)"
    broker = f" &middot; broker {esc(report.broker)}" if report.broker else ""
    published = "Reads published by cameras" if report.leaks is not None else "Reads decided by the gate"
    frames_section = "" if not figures and report.leaks is None else (  # an audit log has no frames
        f"""<h2>Sample frames</h2>\n<div class="frames">{''.join(figures) or '<p>No frames sampled.</p>'}</div>\n""")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(report.title)}</title>
<style>{_CSS}</style></head><body>
<h1>{esc(report.title)}</h1>
<p class="meta">Policy <code>{esc(report.policy)}</code>{broker} &middot;
{esc(report.started_at.isoformat(timespec="seconds"))} to {esc(report.finished_at.isoformat(timespec="seconds"))}</p>
<p>{published}: <b>{report.reads_published}</b> &middot;
leaks to refused agencies: <span class="{leak_cls}">{esc(str(leaks))}</span> &middot;
audit chain: <span class="{audit_cls}">{audit_word}</span> ({report.audit_records} records)</p>
<h2>Decisions per agency</h2>
<table id="decisions"><thead><tr><th>agency</th><th>name</th><th>kind</th><th>jurisdiction</th><th>forwarded</th>
<th>refused</th><th>stored by the agency (own login)</th><th>outcome</th><th>rule that decided</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{frames_section}<h2>Timeline of reads</h2>
<p class="meta">One dot per read; green: forwarded to at least one agency, red: refused for all. Hover for details.</p>
{_timeline_svg(report)}
{search_section}<h2>Audit chain</h2>
<p id="audit" class="{audit_cls}">{esc(audit_word)}: {esc(report.audit_detail)}</p>
</body></html>
"""


def write_report(report: DemoReport, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_html(report))
