"""Telemetry logic that needs no Serve app: cost attribution, the cost report, docs in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ops.cost_report import difference, parse, table
from ops.dashboards.build import OUT as DASHBOARD
from ops.dashboards.build import render as render_dashboard
from telemetry.cost import CostMeter

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cost_is_split_among_requests_in_flight_and_idle_is_counted():
    clock, charges = FakeClock(), []
    meter = CostMeter(3600.0, lambda kind, usd: charges.append((kind, usd)), clock)  # $1/s
    clock.now = 2.0
    meter.start("a")  # 2 s idle before
    clock.now = 4.0
    meter.start("b")  # a alone for 2 s: $2
    clock.now = 8.0
    cost_a = meter.finish("a")  # a and b share 4 s: $2 each
    clock.now = 9.0
    cost_b = meter.finish("b")  # b alone 1 s
    clock.now = 12.0
    meter.tick()  # 3 s idle
    assert cost_a == pytest.approx(4.0)
    assert cost_b == pytest.approx(3.0)
    busy = sum(usd for kind, usd in charges if kind == "busy")
    idle = sum(usd for kind, usd in charges if kind == "idle")
    assert busy == pytest.approx(cost_a + cost_b)
    assert idle == pytest.approx(5.0)


METRICS_TEXT = """\
# TYPE ray_platform_cost_usd_total counter
ray_platform_cost_usd_total{kind="busy",model="m",pool="fast_chat",recipe="r@1+x"} 3.0
ray_platform_cost_usd_total{kind="idle",model="m",pool="fast_chat",recipe="r@1+x"} 1.0
ray_platform_outcomes_total{accepted="true",model="m",pool="fast_chat",recipe="r@1+x"} 8
ray_platform_outcomes_total{accepted="false",model="m",pool="fast_chat",recipe="r@1+x"} 2
ray_platform_requests_total{error_type="",model="m",pool="fast_chat",status="200"} 12
ray_platform_requests_total{error_type="queue_full",model="m",pool="fast_chat",status="429"} 5
ray_platform_cost_usd_total{kind="idle",model="e",pool="embed",recipe="e@1+y"} 0.5
"""


def test_cost_report_per_accepted_outcome():
    pools = parse(METRICS_TEXT)
    chat = pools[("m", "fast_chat")]
    assert chat.total_usd == 4.0 and chat.accepted == 8 and chat.requests == 12
    assert chat.per_accepted == pytest.approx(0.5)
    assert pools[("e", "embed")].per_accepted is None
    later = parse(METRICS_TEXT.replace("} 3.0", "} 7.0").replace("} 8\n", "} 12\n"))
    window = difference(later, pools)[("m", "fast_chat")]
    assert window.busy_usd == 4.0 and window.accepted == 4 and window.per_accepted == 1.0
    assert "| m | fast_chat | 12 | 8 |" in table(pools)


def test_dashboard_json_is_built_from_its_source():
    assert DASHBOARD.read_text() == render_dashboard()


def test_every_metric_is_documented():
    source = (ROOT / "telemetry" / "metrics.py").read_text()
    names = set(re.findall(r'"(platform_[a-z0-9_]+)"', source))
    doc = (ROOT / "docs" / "metrics.md").read_text()
    assert len(names) >= 25
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"undocumented metrics: {missing}"
