"""Every PromQL expression in the dashboards and alert rules names only metrics
that OmniMind exports (omnimind.observability.metrics), plus Prometheus' `up`.

The extractor strips strings, label matchers, ranges, durations, numbers,
function and aggregation names and the label lists of by/without/on/ignoring/
group_left/group_right; what is left are metric names. Histograms count as
their _bucket/_sum/_count series (the bare name selects nothing in Prometheus).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import Histogram

from omnimind.observability import metrics

OPS = Path(__file__).resolve().parents[2] / "ops"
ALERTS = OPS / "prometheus" / "alerts.yml"
ALERTS_TEST = OPS / "prometheus" / "alerts_test.yml"
DASHBOARDS = sorted((OPS / "grafana" / "dashboards").glob("*.json"))

# Aggregation operators, binary/set operators, modifiers and literals.
KEYWORDS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio",
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right",
    "inf", "nan", "atan2",
}
# Followed by a parenthesised label list that is not an expression.
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_TOKEN = re.compile(r"\d[\w.]*|[A-Za-z_:][A-Za-z0-9_:]*|\S")


def _strip_brackets(expr: str, open_: str, close: str) -> str:
    out, depth = [], 0
    for ch in expr:
        if ch == open_:
            depth += 1
        elif ch == close and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (Grafana variables allowed)."""
    expr = _STRING.sub(" ", expr)
    expr = _GRAFANA_VAR.sub(" 1 ", expr)
    expr = re.sub(r"#[^\n]*", " ", expr)  # comments
    expr = _strip_brackets(expr, "{", "}")  # label matchers (strings already gone)
    expr = _strip_brackets(expr, "[", "]")  # ranges and subqueries
    tokens = _TOKEN.findall(expr)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok.lower() in LABEL_LIST_KEYWORDS and nxt == "(":
            depth, i = 0, i + 1  # skip the label list
            while i < len(tokens):
                depth += {"(": 1, ")": -1}.get(tokens[i], 0)
                i += 1
                if depth == 0:
                    break
            continue
        if re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", tok) and tok.lower() not in KEYWORDS and nxt != "(":
            names.add(tok)
        i += 1
    return names


def exported_series() -> frozenset[str]:
    histograms = {m._name for m in vars(metrics).values() if isinstance(m, Histogram)}
    assert histograms <= metrics.ALL_METRIC_NAMES
    series = set(metrics.ALL_METRIC_NAMES - histograms)
    series |= {h + suffix for h in histograms for suffix in ("_bucket", "_sum", "_count")}
    return frozenset(series | {"up"})


def rules() -> list[dict]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs(path: Path) -> list[tuple[str, str]]:
    dash = json.loads(path.read_text())
    found = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((f"{path.name}: panel {panel.get('title')!r}", target["expr"]))
            walk(panel.get("panels", []))

    walk(dash.get("panels", []))
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query or ""
            # label_values(metric, label) / query_result(expr): check the metric part.
            m = re.fullmatch(r"\s*label_values\((.*?)(?:,\s*\w+)?\)\s*", query)
            found.append((f"{path.name}: variable {var['name']}", m.group(1) if m else query))
    return found


def all_exprs() -> list[tuple[str, str]]:
    exprs = [(f"alerts.yml: {r.get('alert') or r.get('record')}", r["expr"]) for r in rules()]
    for path in DASHBOARDS:
        exprs += dashboard_exprs(path)
    return exprs


# --- the extractor ---------------------------------------------------------

@pytest.mark.parametrize(
    "expr, expected",
    [
        ("omnimind_model_version", {"omnimind_model_version"}),
        ('up{job="omnimind-workers"} == 0', {"up"}),
        (
            "histogram_quantile(0.95, sum by (le, node_id) (rate(omnimind_cluster_latency_seconds_bucket[5m])))",
            {"omnimind_cluster_latency_seconds_bucket"},
        ),
        (
            'sum without (instance) (rate(a_total{state=~"failed|x{1,2}"}[5m:30s] offset 1h)) '
            "/ on (task) group_left (reason) sum(b_total) by (task) > bool 0.5e3",
            {"a_total", "b_total"},
        ),
        ("max(x) - min(x) > 0 or absent(y) unless ignoring (node_id) z", {"x", "y", "z"}),
        ("rate(c_total[$__rate_interval]) * ${factor} + count(d)", {"c_total", "d"}),
        ("topk(3, sum by (queue) (e)) and on() vector(1)", {"e"}),
        ('label_replace(f, "dst", "$1", "src", "(.*)")', {"f"}),
    ],
)
def test_extractor_finds_exactly_the_metric_names(expr, expected):
    assert metric_names(expr) == expected


def test_extractor_catches_a_wrong_metric_name():
    wrong = "sum by (node_id) (rate(omnimind_cluster_request_total[5m]))"  # missing "s"
    assert metric_names(wrong) - exported_series() == {"omnimind_cluster_request_total"}


def test_extractor_catches_a_bare_histogram_name():
    # The seed's "histogram_quantile(0.95, omnimind_cluster_latency_seconds)" selects no series.
    seed = "histogram_quantile(0.95, omnimind_cluster_latency_seconds)"
    assert metric_names(seed) - exported_series() == {"omnimind_cluster_latency_seconds"}


def test_exported_series_cover_the_seed_names():
    assert {
        "omnimind_cluster_nodes_total",
        "omnimind_cluster_requests_total",
        "omnimind_cluster_latency_seconds_bucket",
        "omnimind_learning_batches_total",
        "omnimind_learning_loss",
        "omnimind_model_version",
    } <= exported_series()


# --- the real files ----------------------------------------------------------

def test_there_are_queries_to_check():
    exprs = all_exprs()
    assert DASHBOARDS, "no dashboard under ops/grafana/dashboards"
    assert len(exprs) > 30
    assert all(metric_names(e) for _, e in exprs), [w for w, e in exprs if not metric_names(e)]


@pytest.mark.parametrize("where, expr", [pytest.param(w, e, id=w) for w, e in all_exprs()])
def test_query_names_only_exported_metrics(where, expr):
    unknown = metric_names(expr) - exported_series()
    assert not unknown, f"{where}: {sorted(unknown)} not exported by omnimind.observability.metrics in {expr!r}"


def test_alert_unit_test_series_are_exported_metrics():
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    names = {s["series"].split("{")[0].strip() for t in doc["tests"] for s in t["input_series"]}
    assert not names - exported_series(), sorted(names - exported_series())
