#!/usr/bin/env python3
"""Checks that the PromQL of the alert rules and of the Grafana dashboard names only metrics that
common/telemetry.c serves (plus Prometheus' own `up`), with only the labels they carry, and that
every alert is explained in docs/OPERATIONS.md.

    check_metric_names.py ROOT

Labels: every series has `job` and `instance` (from the scrape); per-topic counters (per_topic()
in telemetry.c) also `topic`; the histogram's _bucket series `le`. Prints one line per problem and
exits 1 if there is any. Standard library only (no PyYAML): the rules file is read as text.
"""
import json
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "."
problems = []


def fail(msg):
    problems.append(msg)


src = open(f"{ROOT}/common/telemetry.c", encoding="utf-8").read()
metrics = set(re.findall(r"kprec_[a-z0-9_]+", src))
per_topic = set(re.findall(r'(?:per_topic\(&s,|TOPICS\()\s*"(kprec_[a-z0-9_]+)"', src))
if len(metrics) < 10 or not per_topic or "kprec_batch_seconds_bucket" not in metrics:
    sys.exit(f"check_metric_names: could not read the metric names of {ROOT}/common/telemetry.c")
metrics.add("up")
base_labels = {"job", "instance"}


def labels_of(name):
    s = set(base_labels)
    if name in per_topic:
        s.add("topic")
    if name.endswith("_bucket"):
        s.add("le")
    return s


all_labels = base_labels | {"topic", "le"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "offset", "bool"}


def check_expr(where, expr):
    # Grafana's variables are not PromQL: $__rate_interval and friends stand for a duration
    e = re.sub(r"\$__\w+", "5m", expr)
    named = set(re.findall(r"\bkprec_[a-z0-9_]+", e))
    # any identifier directly followed by a selector or a range is a metric name
    named |= {m for m in re.findall(r"(?<![$\w])([a-zA-Z_:][\w:]*)\s*[{\[]", e)
              if m not in PROMQL_WORDS}
    if not named:
        fail(f"{where}: names no metric: {expr}")
    for m in sorted(named):
        if m not in metrics:
            fail(f"{where}: unknown metric {m} (not in common/telemetry.c)")
    for m, sel in re.findall(r"(?<![$\w])([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", e):
        for lab in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", sel):
            if m in metrics and lab not in labels_of(m):
                fail(f"{where}: {m} has no label {lab!r} (it has {sorted(labels_of(m))})")
    for kw, labs in re.findall(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e):
        for lab in filter(None, (x.strip() for x in labs.split(","))):
            if lab not in all_labels:
                fail(f"{where}: {kw} ({lab}): no kprec series has the label {lab!r}")
    # label_values(metric, label) in Grafana variables
    for m, lab in re.findall(r"label_values\(\s*([\w:]+)[^,]*,\s*(\w+)\s*\)", e):
        if lab not in labels_of(m):
            fail(f"{where}: label_values: {m} has no label {lab!r}")


# --- the rules: every `expr:`, on one line or as a folded block
rules_path = f"{ROOT}/ops/prometheus/kprec.rules.yml"
lines = open(rules_path, encoding="utf-8").read().split("\n")
alerts = []
i = 0
while i < len(lines):
    line = lines[i]
    m = re.match(r"^\s*- alert:\s*(\S+)", line)
    if m:
        alerts.append(m.group(1))
    m = re.match(r"^(\s*)expr:\s*(.*)$", line)
    if m:
        indent, val = len(m.group(1)), m.group(2).strip()
        if val in (">-", ">", "|", "|-"):
            body = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or
                                      len(lines[i]) - len(lines[i].lstrip()) > indent):
                body.append(lines[i].strip())
                i += 1
            val = " ".join(body)
            i -= 1
        check_expr(f"{rules_path}: {alerts[-1] if alerts else 'rule'}", val)
    i += 1
if len(alerts) < 10:
    fail(f"{rules_path}: only {len(alerts)} alerts found")

# --- the dashboard: every "expr" and every variable query
dash_path = f"{ROOT}/ops/grafana/kprec.json"
try:
    dash = json.load(open(dash_path, encoding="utf-8"))
except ValueError as e:
    sys.exit(f"{dash_path}: not JSON: {e}")
n_expr = 0


def walk(o, where):
    global n_expr
    if isinstance(o, dict):
        for k, v in o.items():
            if k == "expr" and isinstance(v, str):
                n_expr += 1
                check_expr(where, v)
            elif k == "query" and isinstance(v, dict) and isinstance(v.get("query"), str):
                check_expr(where + " (variable)", v["query"])
            else:
                walk(v, where)
    elif isinstance(o, list):
        for x in o:
            walk(x, f"{dash_path}: panel {x.get('title')!r}" if isinstance(x, dict) and "title" in x else where)


walk(dash, dash_path)
if n_expr < 10:
    fail(f"{dash_path}: only {n_expr} exprs found")
wanted = {"kprec_events_processed_total", "kprec_consumer_lag", "kprec_events_dead_lettered_total",
          "kprec_batch_seconds_bucket", "kprec_paused", "kprec_model_version",
          "kprec_redis_errors_total", "kprec_producer_errors_total"}
shown = set(re.findall(r"kprec_[a-z0-9_]+", json.dumps(dash)))
for m in sorted(wanted - shown):
    fail(f"{dash_path}: no panel shows {m}")

# --- every alert is explained in the operations guide
ops_doc = open(f"{ROOT}/docs/OPERATIONS.md", encoding="utf-8").read()
for a in alerts:
    if not re.search(rf"^#+ .*\b{a}\b", ops_doc, re.M):
        fail(f"docs/OPERATIONS.md: no heading for alert {a}")

for p in problems:
    print(f"FAIL: {p}")
print(f"check_metric_names: {len(alerts)} alerts, {n_expr} dashboard exprs, "
      f"{len(metrics)} known metrics: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
