#!/usr/bin/env python3
"""Generates the Grafana dashboards in this folder (one JSON file each).

    python3 dashboards/generate.py          # write
    python3 dashboards/generate.py --check  # exit 1 if a committed file differs (scripts/test)

Every dashboard has a `datasource` variable (type prometheus) used by every panel and, where
it applies, a `deployment` variable from label_values — no __inputs, no hard-coded uid, so file
provisioning and the Grafana sidecar both load them. Metric names must be ones ddtwatch exposes
(tests/dashboards.rs checks them against src/telemetry/mod.rs).
"""
import json
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
SCOPE = 'job=~"$job",instance=~"$instance"'


def variables(deployment=True, multi=True):
    v = [{
        "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
        "current": {"selected": False, "text": "", "value": ""}, "hide": 0, "refresh": 1, "regex": "", "options": [],
    }]
    # Replicas and several installations show up as separate series, selectable here.
    for name, label, query in [
        ("job", "Job", "label_values(ddtwatch_build_info, job)"),
        ("instance", "Instance", 'label_values(ddtwatch_build_info{job=~"$job"}, instance)'),
    ]:
        v.append({
            "name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": name},
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": False, "text": "All", "value": "$__all"}, "options": [], "hide": 0,
            "sort": 1, "regex": "",
        })
    if deployment:
        v.append({
            "name": "deployment", "label": "Deployment", "type": "query", "datasource": DS,
            "query": {"query": f"label_values(ddtwatch_deployment_info{{{SCOPE}}}, deployment)", "refId": "deployment"},
            "refresh": 2, "includeAll": multi, "multi": multi,
            "current": {"selected": False, "text": "", "value": ""}, "options": [], "hide": 0,
            "sort": 1, "regex": "",
        })
    return {"list": v}


def scope(expr):
    """Adds the job/instance matchers to every ddtwatch series selector of a query."""
    def one(m):
        name, brace = m.group(1), m.group(2)
        return f"{name}{{{SCOPE}," if brace else f"{name}{{{SCOPE}}}"
    return re.sub(r"\b(ddtwatch_[A-Za-z0-9_]+)\b(\{)?", one, expr)


class Board:
    def __init__(self, uid, title, description, deployment=True, multi=True):
        self.uid, self.title, self.description = uid, title, description
        self.deployment, self.multi = deployment, multi
        self.panels, self.y, self.x, self.row_h = [], 0, 0, 0

    def panel(self, title, targets, kind="timeseries", w=12, h=8, unit=None, description="",
              thresholds=None, min_=None, max_=None, extra=None):
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        # Every query is narrowed to the selected jobs and instances.
        targets = [(scope(e), lf) for e, lf in targets]
        # Every panel says what it shows and what to do about it, in plain words.
        description = description or DESCRIPTIONS.get(title, "")
        assert description, f"panel {title!r} has no description"
        if title in WHAT_TO_DO:
            description += " What to do: " + WHAT_TO_DO[title]
        p = {
            "id": len(self.panels) + 1, "type": kind, "title": title, "description": description,
            "datasource": DS, "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "targets": [{"datasource": DS, "refId": chr(65 + i), "expr": e, "legendFormat": lf,
                         "range": kind in ("timeseries", "heatmap", "state-timeline"),
                         "instant": kind not in ("timeseries", "heatmap", "state-timeline")}
                        for i, (e, lf) in enumerate(targets)],
            "fieldConfig": {"defaults": {}, "overrides": []}, "options": {},
        }
        d = p["fieldConfig"]["defaults"]
        # Every panel has a unit ("none": a mapped state, a ratio or a statistic without one).
        unit = unit or UNITS.get(title)
        assert unit, f"panel {title!r} has no unit"
        d["unit"] = unit
        if min_ is not None:
            d["min"] = min_
        if max_ is not None:
            d["max"] = max_
        if thresholds:
            d["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None}] +
                               [{"color": c, "value": v} for v, c in thresholds]}
        if extra:
            extra = dict(extra)
            fc = extra.pop("fieldConfig", None)
            if fc:
                d.update(fc.get("defaults", {}))
                p["fieldConfig"]["overrides"] += fc.get("overrides", [])
            p.update(extra)
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)
        return p

    def json(self):
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["ddtwatch"], "timezone": "utc", "schemaVersion": 39, "version": 1,
            "editable": True, "graphTooltip": 1, "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"}, "timepicker": {},
            "templating": variables(self.deployment, self.multi),
            # The breach timeline is a state-timeline panel of ddtwatch_condition_state: the
            # strict dashboard schema admits no Prometheus annotation queries.
            "annotations": {"list": []},
            "panels": self.panels,
            # Every ddtwatch dashboard links to the others (same tag), keeping the time range and
            # the selected deployment.
            "links": [{"title": "ddtwatch dashboards", "type": "dashboards", "tags": ["ddtwatch"], "asDropdown": True,
                       "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False,
                       "tooltip": "", "url": ""}],
        }


D = 'deployment=~"$deployment"'

# Panel descriptions (shown as the panel's (i) tooltip), by title.
DESCRIPTIONS = {
    "From alert to outcome: alerts reviewed, acted on, confirmed": "How many alerts were raised, reviewed by an officer, acted on (engaged), followed up, and confirmed true or false. A large gap between alerts and reviewed means alerts go unadjudicated.",
    "Faces / plates processed": "Faces processed (LFR) or number plates read (ANPR) in this deployment so far: the denominator of the false-alert rate per face processed.",
    "Alert and false-alert rates (with 95% upper bounds)": "Each headline rate of this deployment with the upper end of its 95% interval. Compare the upper bound with the authorised limit: when even the bound is above it, the limit is breached with confidence.",
    "Condition values vs limits": "Every check of this deployment: its current value next to the limit the authorising officer set.",
    "Override rate (dismissed / adjudicated)": "Share of alerts the operator dismissed, and share of false alerts that were nevertheless acted on. Near 0% dismissed suggests automation bias (alerts accepted unchecked); near 100% suggests the system is ignored.",
    "Adjudication latency (heatmap)": "How long officers took to decide on alerts (alert to first decision), as a heatmap over time. Long tails mean alerts wait while the subject may have moved on.",
    "Adjudication latency p95": "95% of alerts were decided within this time. Red above the 2-minute limit.",
    "How far scores have moved from the baseline (PSI, KS) against the limit": "How different today's match scores are from the baseline taken at the start of the deployment (PSI and the KS distance, with its critical value). Above the limit: the system is not behaving as it did when it was authorised.",
    "Evidence of drift (fires at 1)": "How close each drift check is to firing: the distance between recent scores and the baseline over the distance needed (1), set so that with scores as steady as at the start it reaches 1 on at most 1 in 100 deployment-days. PSI checks also need PSI above their limit. The bar shows the current segment of scores; a check that fired stays firing until a later segment shows no drift.",
    "Gradual shift in the mean score (Page-Hinkley)": "A slow, steady change of the mean score that PSI and KS can miss. It rises while scores drift in one direction.",
    "Drift checks over time: ok, pending or firing": "The drift checks of this deployment over time.",
    "Drift samples": "How many scores each drift check has seen: a check on few scores cannot say much.",
    "False-alert rate by group (Wilson 95%)": "False alerts per alert for each recorded demographic group of the watch-list entry, with its 95% interval. Wide intervals mean too few alerts to judge that group.",
    "Evidence of unequal false alerts (fires at 1)": "How close each fairness check is to firing: the statistical evidence that one group's false-alert rate differs from the others', over the evidence needed (1). It is set so that with no real difference it reaches 1 on at most 1 in 100 deployment-days. The check fires when this reaches 1 and the ratio is also above its limit.",
    "Disparity ratios vs limit": "Highest group false-alert rate divided by the lowest (and by the geometric mean). Above the limit (1.25 by default) one group bears clearly more false alerts.",
    "Fisher exact p-value (top group vs rest)": "How likely the difference between the worst-affected group and the rest is to be chance, for one look at today's numbers. It is shown for reference: looked at every second it dips below any level by chance, so the check does not fire on it (see the evidence panel).",
    "Alerts per group (small samples are visible)": "Number of alerts per demographic group, so small groups (and wide intervals) are visible.",
    "False alerts per group": "Number of false alerts per demographic group.",
    "Build": "The ddtwatch version this instance runs.",
    "Ready": "READY once the configuration is loaded and the state restored; NOT READY means the instance does not check anything yet (see its log).",
    "How far behind real time the checks are": "Now minus the engine clock: how old the newest event the checks have seen is. Growing lag means ddtwatch is falling behind or the stream has stopped.",
    "Events applied by type /s": "Events applied per second by type (detections, alerts, decisions, outcomes, status, deployment, deletion).",
    "Invalid events by reason /s": "Events rejected per second, by reason (malformed, wrong type, unknown version, future timestamp, ...). Each is on the dead-letter topic with its reason.",
    "Duplicates and held events": "Re-delivered events ignored as duplicates, and decisions or outcomes held until their alert arrived (both are normal in small numbers).",
    "Event lag p95 (receive - ts, live mode)": "How late events arrive at ddtwatch after they happened (live mode): 95th percentile and mean.",
    "Checks evaluated per second": "How often all conditions are evaluated (about once a second while events flow).",
    "Config reloads": "Configuration reloads that were applied (success) or rejected (failure; the previous configuration stays in force).",
    "Breach transitions": "Breaches that fired and resolved since the process started.",
    "Kafka consumer lag by partition": "Events in Kafka not yet read by ddtwatch, per partition. Growing lag means ddtwatch cannot keep up.",
    "Kafka messages consumed /s": "Messages read from Kafka per second.",
    "Offset commits": "Kafka offset commits by result: an offset is committed only once its events are applied and checkpointed.",
    "Dead letters produced": "Rejected events written to the dead-letter topic, by result. Failures hold back the offset commit (nothing is lost).",
    "Broker reachable": "UP while librdkafka reaches at least one Kafka broker.",
    "Undelivered notifications handed over / taken over": "Notifications not yet delivered travel with their deployment's state through Kafka, so a pod that is deleted loses none: 'written into snapshots' counts them each time a snapshot carries them (steady while a receiver is down), 'taken over' counts those another instance picked up when it took the deployment over. Taken-over notifications are delivered under their original ids, so receivers see no duplicates.",
    "Outbox depth": "Breach notifications waiting to be delivered. Stays above 0 while a receiver is down.",
    "Oldest pending notification": "How long the oldest undelivered notification has waited. Red after 5 minutes: the oversight lead has not been told.",
    "Notifications by receiver and result": "Notification attempts per receiver: delivered, failed for good, retried, superseded (Alertmanager), re-sent.",
    "Audit records written": "Records appended to the tamper-evident audit log by this process in the time range. 'failed' above 0 means records are missing from the audit trail (disk full or unwritable): fix the volume (runbook DdtwatchAuditWriteFailing).",
    "Audit records sent to the audit topic": "Every audit record is also written to a Kafka topic, so the audit trail survives when Kubernetes deletes the pod and its disk. 'acknowledged' should follow 'Audit records written'. Any 'failed' means the topic is refusing records: ddtwatch keeps them, sends them again and holds back its Kafka progress until they are stored, so check the topic and its permissions (runbook DdtwatchAuditProduceFailing).",
    "State snapshots / restores": "Deployment snapshots written to the state topic, and deployments restored from it when partitions moved to this instance.",
    "Event ids remembered (memory / disk)": "Event ids kept to recognise re-delivered events (at least 1 hour and the last million per deployment), in memory and spilled to disk.",
    "Dedup index size": "Memory used by the index of event ids spilled to disk (capped by engine.dedup_index_mb). Flat at the cap is expected on long deployments.",
    "Dedup spill errors": "Failed writes or reads of spilled event ids. Nothing is dropped (the ids stay in memory), but memory grows: check that state_dir has space.",
    "Active deployments": "Deployments that have started and not stopped.",
    "Conditions firing": "Conditions currently in breach across all deployments. Each breach was notified to its receivers.",
    "Events applied /s": "Events applied per second across all deployments.",
    "Invalid events /s": "Events rejected per second across all deployments (see the health dashboard for reasons).",
    "Faces / plates processed per second": "Faces processed (LFR) or plates read (ANPR) per second, per deployment.",
    "Alerts (cumulative)": "Alerts raised so far, per deployment.",
    "False alerts per alert (Wilson 95%)": "Of the alerts raised, the share that were false, with its 95% interval: the second of the two false-alert rates.",
    "Conditions by state": "Per deployment: how many checks are firing, and how many have too little data to judge yet.",
    "Breaches fired": "How many times each condition of each deployment has fired.",
    "Notifications by result": "Breach notifications by result across receivers.",
    "Outbox: pending notifications": "Breach notifications not yet delivered. Above 0 for long means a receiver is down."
}


def overview():
    b = Board("ddtwatch-overview", "ddtwatch — overview", "All deployments at a glance", multi=True)
    b.panel("Active deployments", [('sum(ddtwatch_deployments{phase="started"})', "started")], "stat", w=6, h=4)
    b.panel("Conditions firing", [("sum(ddtwatch_conditions_firing)", "firing")], "stat", w=6, h=4,
            thresholds=[(1, "red")])
    b.panel("Events applied /s", [("sum(rate(ddtwatch_events_total[$__rate_interval]))", "events/s")],
            "stat", w=6, h=4, unit="ops")
    b.panel("Invalid events /s", [("sum(rate(ddtwatch_invalid_events_total[$__rate_interval]))", "invalid/s")],
            "stat", w=6, h=4, unit="ops", thresholds=[(1, "orange")])
    b.panel("Faces / plates processed per second",
            [(f"sum by (deployment) (rate(ddtwatch_detections_total{{{D}}}[$__rate_interval]))", "{{deployment}}")],
            unit="ops")
    b.panel("Alerts (cumulative)", [(f'ddtwatch_funnel{{{D},stage="alerts"}}', "{{deployment}}")])
    b.panel("False alerts per face processed (Wilson 95%)",
            [(f'ddtwatch_rate_ratio{{{D},rate="false_alerts_per_detection",bound="estimate"}}', "{{deployment}}"),
             (f'ddtwatch_rate_ratio{{{D},rate="false_alerts_per_detection",bound="upper"}}', "{{deployment}} upper"),
             (f'ddtwatch_rate_ratio{{{D},rate="false_alerts_per_detection",bound="lower"}}', "{{deployment}} lower")],
            unit="percentunit", description="Both false-alert rates are always shown (DOMAIN.md).")
    b.panel("False alerts per alert (Wilson 95%)",
            [(f'ddtwatch_rate_ratio{{{D},rate="false_alerts_per_alert",bound="estimate"}}', "{{deployment}}"),
             (f'ddtwatch_rate_ratio{{{D},rate="false_alerts_per_alert",bound="upper"}}', "{{deployment}} upper"),
             (f'ddtwatch_rate_ratio{{{D},rate="false_alerts_per_alert",bound="lower"}}', "{{deployment}} lower")],
            unit="percentunit")
    b.panel("Conditions by state", [(f"sum by (deployment) (ddtwatch_condition_state{{{D}}} == bool 2)", "{{deployment}} firing"),
                                    (f"sum by (deployment) (ddtwatch_condition_state{{{D}}} == bool -1)", "{{deployment}} insufficient data")],
            "table", w=12)
    b.panel("Breaches fired", [(f"sum by (deployment, condition, source) (ddtwatch_breaches_total{{{D}}})", "{{deployment}} {{condition}} {{source}}")],
            "table", w=12)
    b.panel("Notifications by result", [("sum by (result) (increase(ddtwatch_notifications_total[$__range]))", "{{result}}")],
            "stat", w=12)
    b.panel("Outbox: pending notifications", [("sum(ddtwatch_outbox_depth)", "pending")], "stat", w=12,
            thresholds=[(1, "orange")])
    return b


def detail():
    b = Board("ddtwatch-deployment", "ddtwatch — deployment detail", "One deployment: funnel, rates, oversight, list", multi=False)
    b.panel("From alert to outcome: alerts reviewed, acted on, confirmed", [(f'ddtwatch_funnel{{{D},stage=~"alerts|adjudicated|engaged|outcomes|true_alerts|false_alerts"}}', "{{stage}}")],
            "bargauge", w=12)
    b.panel("Faces / plates processed", [(f"ddtwatch_detections_total{{{D}}}", "detections")], "stat", w=12)
    b.panel("Alert and false-alert rates (with 95% upper bounds)", [(f'ddtwatch_rate_ratio{{{D},bound="estimate"}}', "{{rate}}"),
                                  (f'ddtwatch_rate_ratio{{{D},bound="upper"}}', "{{rate}} upper")], unit="percentunit")
    # One metric per unit (rates are proportions, latencies and gaps seconds, statistics plain).
    b.panel("Condition values vs limits", [(f'ddtwatch_condition_value_ratio{{{D},bound="estimate"}}', "{{condition}} (proportion)"),
                                           (f'ddtwatch_condition_value_seconds{{{D},bound="estimate"}}', "{{condition}} {{source}} (seconds)"),
                                           (f'ddtwatch_condition_value{{{D},bound="estimate"}}', "{{condition}} (statistic)"),
                                           (f"ddtwatch_condition_limit{{{D}}}", "{{condition}} {{source}} {{limit}}")], "table")
    b.panel("Override rate (dismissed / adjudicated)",
            [(f'ddtwatch_rate_ratio{{{D},rate="override_rate",bound="estimate"}}', "override"),
             (f'ddtwatch_rate_ratio{{{D},rate="false_alert_engagement",bound="estimate"}}', "false alerts acted upon"),
             # The deployment's own limits, not hard-coded lines.
             (f'ddtwatch_condition_limit{{{D},condition="override_rate"}}', "override limit {{limit}}")],
            unit="percentunit")
    b.panel("Adjudication latency (heatmap)",
            [(f"sum by (le) (increase(ddtwatch_adjudication_latency_seconds_bucket{{{D}}}[$__rate_interval]))", "{{le}}")],
            "heatmap", extra={"options": {"calculate": False, "yAxis": {"unit": "s"}}})
    b.panel("Adjudication latency p95", [(f'ddtwatch_quantile_seconds{{{D},condition="adjudication_latency"}}', "p95"),
                                         (f'ddtwatch_condition_limit{{{D},condition="adjudication_latency",limit="max"}}',
                                          "limit")],
            unit="s")
    b.panel("Checks over time: ok, pending or firing",
            [(f"ddtwatch_condition_state{{{D}}}", "{{condition}} {{source}}")], "state-timeline", w=24, h=10,
            description="Each condition of this deployment over time. FIRING (red) means a breach was notified; "
                        "'no data yet' means too few events to judge.",
            extra=state_mapping())
    return b


def fairness():
    b = Board("ddtwatch-fairness", "ddtwatch — fairness", "Per-group false-alert rates, disparity and sample sizes", multi=False)
    b.panel("False-alert rate by group (Wilson 95%)",
            [(f'ddtwatch_group_false_alert_ratio{{{D},bound="estimate"}}', "{{attribute}}={{group}}"),
             (f'ddtwatch_group_false_alert_ratio{{{D},bound="upper"}}', "{{attribute}}={{group}} upper"),
             (f'ddtwatch_group_false_alert_ratio{{{D},bound="lower"}}', "{{attribute}}={{group}} lower")],
            unit="percentunit", w=24)
    b.panel("Disparity ratios vs limit", [(f"ddtwatch_disparity_ratio{{{D}}}", "{{condition}} {{ratio}}"),
                                          (f'ddtwatch_condition_limit{{{D},limit="max_ratio"}}', "{{condition}} limit")])
    b.panel("Fisher exact p-value (top group vs rest)", [(f"ddtwatch_disparity_p_value{{{D}}}", "{{condition}}")])
    b.panel("Evidence of unequal false alerts (fires at 1)",
            [(f'ddtwatch_condition_evidence_ratio{{{D}}} and on (condition) ddtwatch_disparity_ratio{{{D},ratio="max_min"}}', "{{condition}}")],
            unit="none", thresholds=[(1, "red")])
    b.panel("Alerts per group (small samples are visible)", [(f"ddtwatch_group_alerts{{{D}}}", "{{attribute}}={{group}}")],
            "table")
    b.panel("False alerts per group", [(f"ddtwatch_group_false_alerts{{{D}}}", "{{attribute}}={{group}}")], "table")
    return b


def drift():
    b = Board("ddtwatch-drift", "ddtwatch — drift", "Score and quality drift against the baseline", multi=False)
    b.panel("How far scores have moved from the baseline (PSI, KS) against the limit", [(f'ddtwatch_drift_statistic{{{D},statistic=~"psi|ks_d|ks_critical"}}', "{{condition}} {{statistic}}"),
                             (f'ddtwatch_condition_limit{{{D},limit="max"}} and on (condition) ddtwatch_drift_statistic{{{D},statistic="psi"}}', "{{condition}} limit")])
    b.panel("Evidence of drift (fires at 1)",
            [(f'ddtwatch_condition_evidence_ratio{{{D}}} and on (condition) ddtwatch_condition_state{{{D},kind="drift"}}', "{{condition}}")],
            unit="none", thresholds=[(1, "red")])
    b.panel("Gradual shift in the mean score (Page-Hinkley)", [(f'ddtwatch_drift_statistic{{{D},statistic="page_hinkley"}}', "{{condition}}")])
    b.panel("Drift checks over time: ok, pending or firing", [(f'ddtwatch_condition_state{{{D},kind="drift"}}', "{{condition}}")],
            "state-timeline", w=24, extra=state_mapping())
    b.panel("Drift samples", [(f'ddtwatch_condition_samples{{{D}}} and on (condition) ddtwatch_drift_statistic{{{D}}}', "{{condition}}")], "table", w=24)
    return b


def state_mapping():
    """Condition states as words and colours (ddtwatch_condition_state)."""
    return {"fieldConfig": {"defaults": {
        "mappings": [{"type": "value", "options": {
            "-1": {"text": "no data yet", "color": "text"},
            "0": {"text": "ok", "color": "green"},
            "1": {"text": "pending", "color": "yellow"},
            "2": {"text": "FIRING", "color": "red"}}}],
        "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]}},
        "overrides": []}}


def zero_one_mapping(zero, one):
    """A 0/1 stat shown as words: 0 red, 1 green."""
    return {"fieldConfig": {"defaults": {
        "mappings": [{"type": "value", "options": {"0": {"text": zero, "color": "red"},
                                                   "1": {"text": one, "color": "green"}}}],
        "thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}]}},
        "overrides": []}}


def health():
    b = Board("ddtwatch-health", "ddtwatch — health", "ddtwatch itself: ingest, lag, invalid events, reloads", deployment=False)
    b.panel("Build", [("ddtwatch_build_info", "{{version}}")], "table", w=8, h=4)
    b.panel("Ready", [("ddtwatch_ready", "ready")], "stat", w=8, h=4, extra=zero_one_mapping("NOT READY", "READY"))
    b.panel("How far behind real time the checks are", [("time() - ddtwatch_engine_clock_timestamp_seconds", "lag")], "stat", w=8, h=4, unit="s")
    b.panel("Event sources consuming", [("ddtwatch_source_up", "{{source}}")], "stat", w=8,
            description="1 while a source is connected and consuming, 0 while it is not (broker unreachable, "
                        "credentials refused, untrusted certificate). The cause is in /api/v1/status and the log.",
            extra=zero_one_mapping("DOWN", "UP"))
    b.panel("Source errors by kind /s", [("sum by (source, kind) (rate(ddtwatch_source_errors_total[$__rate_interval]))",
                                          "{{source}} {{kind}}")], w=8, unit="ops",
            description="Errors of each source by kind: transport (broker unreachable), authentication, tls, authorization.")
    b.panel("Tasks healthy", [("ddtwatch_task_healthy", "{{task}}")], "stat", w=8,
            description="Each long-lived task (engine, sources, dispatcher, snapshotter, config reload): 1 while it runs "
                        "and reports progress, 0 once it stopped or stalled (then /healthz answers 503 naming it).",
            extra=zero_one_mapping("FAILED", "OK"))
    b.panel("Events applied by type /s", [("sum by (type) (rate(ddtwatch_events_total[$__rate_interval]))", "{{type}}")], unit="ops")
    b.panel("Invalid events by reason /s", [("sum by (reason) (rate(ddtwatch_invalid_events_total[$__rate_interval]))", "{{reason}}")], unit="ops")
    b.panel("Duplicates and held events", [("rate(ddtwatch_duplicate_events_total[$__rate_interval])", "duplicates/s"),
                                           ("rate(ddtwatch_held_events_total[$__rate_interval])", "held/s")], unit="ops")
    b.panel("Event lag p95 (receive - ts, live mode)",
            [("histogram_quantile(0.95, sum by (le) (rate(ddtwatch_event_lag_seconds_bucket[$__rate_interval])))", "p95"),
             ("sum(rate(ddtwatch_event_lag_seconds_sum[$__rate_interval])) / sum(rate(ddtwatch_event_lag_seconds_count[$__rate_interval]))", "mean")], unit="s")
    b.panel("Checks evaluated per second", [("rate(ddtwatch_evaluations_total[$__rate_interval])", "evaluations")], unit="ops")
    b.panel("Config reloads", [("increase(ddtwatch_config_reloads_total[$__range])", "{{result}}")], "stat", w=12)
    b.panel("Breach transitions", [("increase(ddtwatch_transitions_total[$__range])", "{{state}}")], "stat", w=12)
    b.panel("Kafka consumer lag by partition", [("ddtwatch_kafka_consumer_lag", "{{topic}}/{{partition}}")],
            thresholds=[(1000, "orange")])
    b.panel("Kafka messages consumed /s", [("rate(ddtwatch_kafka_messages_total[$__rate_interval])", "messages/s")], unit="ops")
    b.panel("Offset commits", [("rate(ddtwatch_kafka_commits_total[$__rate_interval])", "{{result}}")], w=8, unit="ops")
    b.panel("Dead letters produced", [("rate(ddtwatch_dead_letters_produced_total[$__rate_interval])", "{{result}}")], w=8,
            unit="ops")
    b.panel("Broker reachable", [("ddtwatch_kafka_broker_up", "up")], "stat", w=8, extra=zero_one_mapping("DOWN", "UP"))
    b.panel("Outbox depth", [("ddtwatch_outbox_depth", "pending")], "stat", w=8, thresholds=[(1, "orange")])
    b.panel("Oldest pending notification", [("ddtwatch_outbox_oldest_pending_age_seconds", "age")], "stat", w=8,
            unit="s", thresholds=[(300, "red")])
    b.panel("Notifications by receiver and result",
            [("increase(ddtwatch_notifications_total[$__rate_interval])", "{{receiver}} {{result}}")], w=8)
    b.panel("Audit records written", [("increase(ddtwatch_audit_records_total[$__range])", "written"),
                                      ("increase(ddtwatch_audit_write_errors_total[$__range])", "failed")], "stat", w=12,
            unit="short")
    b.panel("Audit records sent to the audit topic",
            [("increase(ddtwatch_audit_records_produced_total[$__rate_interval])", "acknowledged by Kafka"),
             ("increase(ddtwatch_audit_produce_errors_total[$__rate_interval])", "failed (sent again)")], w=12)
    b.panel("State snapshots / restores", [("rate(ddtwatch_state_snapshots_total[$__rate_interval])", "snapshots/s"),
                                           ("increase(ddtwatch_state_restored_deployments_total[$__rate_interval])", "restored")],
            w=12)
    b.panel("Undelivered notifications handed over / taken over",
            [("increase(ddtwatch_outbox_handed_over_total[$__rate_interval])", "written into snapshots"),
             ("increase(ddtwatch_outbox_restored_total[$__rate_interval])", "taken over from a moved deployment")],
            w=12)
    # Duplicate detection keeps >= 1h and >= the last 1,000,000 ids per deployment (CONDITIONS.md);
    # with state_dir they spill to state_dir/dedup.
    b.panel("Event ids remembered (memory / disk)", [("ddtwatch_dedup_remembered_ids", "{{where}}")], w=12)
    b.panel("Dedup index size", [("ddtwatch_dedup_index_bytes", "index bytes")], w=6, unit="bytes")
    b.panel("Dedup spill errors",
            [("increase(ddtwatch_dedup_spill_errors_total[$__rate_interval])", "spill errors")], w=6, unit="short")
    return b


# What an officer does when a panel looks wrong, for the panels whose description alone does not
# say (appended to the description as "What to do: ...").
WHAT_TO_DO = {
    "Condition values vs limits": "a value beyond its limit is a breach: open the condition's runbook from its notification (docs/conditions.md).",
    "Checks over time: ok, pending or firing": "for a FIRING row, read its notification and follow the runbook it links; 'no data yet' for long means the deployment sends too few events.",
    "Drift checks over time: ok, pending or firing": "when one is FIRING, find what changed (threshold, cameras, lighting, watchlist, algorithm version) before trusting the rates.",
    "Gradual shift in the mean score (Page-Hinkley)": "a steady climb means scores are moving one way: look for a slow change such as dusk, camera drift or a new watchlist.",
    "Drift samples": "a check with few scores is not yet informative; wait before drawing conclusions.",
    "Faces / plates processed": "a count that stops growing while the deployment runs means the cameras or the stream stopped: see the health dashboard.",
    "Alerts per group (small samples are visible)": "groups with few alerts give wide intervals: do not read a disparity from them alone.",
    "False alerts per group": "compare with alerts per group; a group with many false alerts and few alerts is the one to look at.",
    "Build": "instances running different versions during a rollout is expected; for long, finish or roll back the rollout.",
    "Source errors by kind /s": "authentication or tls errors never recover by themselves: fix the credential or certificate; transport errors mean the broker is unreachable.",
    "Events applied by type /s": "a type dropping to zero while others flow points at the system that sends it.",
    "Event lag p95 (receive - ts, live mode)": "growing lag means the sending system queues events or clocks disagree: check its clock and its queue.",
    "Checks evaluated per second": "near zero while events flow means the engine is stuck: see 'Tasks healthy' and the log.",
    "Kafka messages consumed /s": "zero while the producers send means ddtwatch is not consuming: see 'Event sources consuming'.",
    "Offset commits": "failures that persist hold back progress (nothing is lost): see the log for the cause.",
    "Notifications by receiver and result": "'failed' means a notification was given up: fix the receiver and tell the oversight lead by other means.",
    "State snapshots / restores": "no snapshots while events flow means the state topic refuses them: see the log and runbook DdtwatchStateTopicMisconfigured.",
    "Event ids remembered (memory / disk)": "steady growth in memory with no spill means state_dir is unset or unwritable.",
    "Active deployments": "a deployment that should have ended still active means its stop event never arrived.",
    "Events applied /s": "zero while deployments run means nothing reaches ddtwatch: see the health dashboard.",
    "Faces / plates processed per second": "a deployment dropping to zero while active has a silent camera or a stopped stream.",
    "Alerts (cumulative)": "a sudden jump in one deployment deserves a look at its false-alert rates.",
    "False alerts per face processed (Wilson 95%)": "when the upper bound passes the authorised cap (1 in 1,000 by default) the condition fires: follow its runbook.",
    "Breaches fired": "a condition that fires again and again needs its cause fixed, not its limit raised.",
    "Notifications by result": "any 'failed' means an oversight lead was not told: check the receivers.",
}


# Units of the panels that do not pass one ("short": a count; "none": a mapped state, a ratio or
# a statistic without a unit).
UNITS = {
    "From alert to outcome: alerts reviewed, acted on, confirmed": "short",
    "Faces / plates processed": "short",
    "Condition values vs limits": "none",
    "Adjudication latency (heatmap)": "s",
    "Checks over time: ok, pending or firing": "none",
    "How far scores have moved from the baseline (PSI, KS) against the limit": "none",
    "Gradual shift in the mean score (Page-Hinkley)": "none",
    "Drift checks over time: ok, pending or firing": "none",
    "Drift samples": "short",
    "Disparity ratios vs limit": "none",
    "Fisher exact p-value (top group vs rest)": "none",
    "Alerts per group (small samples are visible)": "short",
    "False alerts per group": "short",
    "Build": "none",
    "Ready": "none",
    "Event sources consuming": "none",
    "Tasks healthy": "none",
    "Config reloads": "short",
    "Breach transitions": "short",
    "Kafka consumer lag by partition": "short",
    "Broker reachable": "none",
    "Outbox depth": "short",
    "Notifications by receiver and result": "short",
    "Audit records sent to the audit topic": "short",
    "State snapshots / restores": "short",
    "Undelivered notifications handed over / taken over": "short",
    "Event ids remembered (memory / disk)": "short",
    "Active deployments": "short",
    "Conditions firing": "short",
    "Alerts (cumulative)": "short",
    "Conditions by state": "short",
    "Breaches fired": "short",
    "Notifications by result": "short",
    "Outbox: pending notifications": "short",
}


BOARDS = {"overview.json": overview, "deployment.json": detail, "fairness.json": fairness,
          "drift.json": drift, "health.json": health}


def main():
    check = "--check" in sys.argv
    stale = []
    titles = set()
    for name, make in BOARDS.items():
        board = make().json()
        titles |= {p["title"] for p in board["panels"]}
        text = json.dumps(board, indent=2, sort_keys=False) + "\n"
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    # Advice and units for panels that no longer exist would silently stop applying.
    unused = (set(WHAT_TO_DO) | set(UNITS) | set(DESCRIPTIONS)) - titles
    assert not unused, f"entries for panels that do not exist: {sorted(unused)}"
    if stale:
        print("dashboards out of date (run python3 dashboards/generate.py):", ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
