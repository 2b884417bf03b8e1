"""The building blocks of Grafana dashboards: panels over one datasource, laid out two per row.

Apart from render.grafana so that store kinds (stores/<kind>/kind.py) build their dashboards with
them without importing the stack's config models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DATASOURCE_UID = "keel-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


def panel(title: str, queries: list[Query], unit: str, *, kind: str = "timeseries", width: int = 12) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": 0, "y": 0},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {"datasource": DATASOURCE, "refId": chr(ord("A") + index), "expr": q.expr, "legendFormat": q.legend}
            for index, q in enumerate(queries)
        ],
    }


def dashboard(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    # Lay panels out two per row, in order.
    x = y = 0
    for index, item in enumerate(panels, start=1):
        width = item["gridPos"]["w"]
        if x + width > 24:
            x, y = 0, y + 8
        item["gridPos"].update(x=x, y=y)
        item["id"] = index
        x += width
    return {
        "uid": uid,
        "title": title,
        "tags": ["keel"],
        "timezone": "utc",
        "editable": False,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-6h", "to": "now"},
        "panels": panels,
    }


def expressions(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard's panels."""
    return [target["expr"] for item in board["panels"] for target in item["targets"]]
