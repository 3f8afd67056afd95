"""The demo report's outcome per agency is what the policy decided for it, not 'refused' for an
allowed agency that happened to get no read."""

import re
from datetime import datetime, timezone

import pytest

from edge.demo.report import AgencyRow, DemoReport, render_html

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def _outcomes(agencies):
    text = render_html(DemoReport("demo", "ca-sb34@1", T0, T0, "embedded", 0, 0, True, 3, "intact", agencies))
    return {a: (cls, words) for a, cls, words in
            re.findall(r'<tr><td>([a-z-]+)</td>.*?<td class="([a-z]+)">([a-z ]+)</td><td><code>', text)}


@pytest.mark.parametrize("row, want", [
    # no read at all (footage without a readable plate, --synthetic-reads 0): only the forged messages,
    # refused for every agency by message-level rules. Before: 'refused', in red, for Oakland too.
    (AgencyRow("oakland-pd", "Oakland PD", "local", "CA", 0, 3,
               ("refuse:malformed x2, refuse:camera-topic-mismatch x1",), 0), "no read decided"),
    # the same without forgeries: the demo shows the policy's own rules
    (AgencyRow("oakland-pd", "Oakland PD", "local", "CA", 0, 0, ("allow:in-jurisdiction-public-agency",), 0),
     "receives reads"),
    (AgencyRow("oakland-pd", "Oakland PD", "local", "CA", 7, 3,
               ("allow:in-jurisdiction-public-agency x7, refuse:malformed x2, refuse:camera-topic-mismatch x1",), 7),
     "receives reads"),
    (AgencyRow("ice", "ICE", "federal", "DC", 0, 10,
               ("refuse:recipient-kind x7, refuse:malformed x2, refuse:camera-topic-mismatch x1",), 0), "refused"),
    (AgencyRow("reno-pd", "Reno PD", "local", "NV", 0, 1, ("refuse:out-of-jurisdiction",), 0), "refused"),
    (AgencyRow("tf", "Task force", "state", "CA", 0, 1, ("refuse:on-behalf-of x1",), 0), "refused"),
])
def test_outcome_follows_the_policy_decision(row, want):
    cls, words = _outcomes([row])[row.agency_id]
    assert words == want
    assert cls == {"receives reads": "ok", "refused": "bad", "no read decided": "meta"}[want]
