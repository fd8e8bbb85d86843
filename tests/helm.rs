//! The Helm chart with real tools (installed by scripts/test into ~/.cache/ddtwatch-tools, see
//! ../shared/TOOLS.md): `helm lint --strict`, `helm template` for defaults, standalone with every
//! toggle, sidecar mode (a fixture workload chart injecting the native sidecar) and a wrong-typed
//! values file; rendered manifests validated offline (kubernetes-validate for core kinds, the
//! prometheus-operator models for ServiceMonitor/PrometheusRule); the rendered ddtwatch.yaml
//! passes `ddtwatch check-config`, the PrometheusRule's rules pass `promtool check rules`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_norway::Value;

fn tools() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    cache.join("ddtwatch-tools")
}

fn tool(rel: &str) -> PathBuf {
    let p = tools().join(rel);
    assert!(p.exists(), "{} missing — scripts/test installs it (see ../shared/TOOLS.md)", p.display());
    p
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn chart() -> PathBuf {
    common::repo().join("helm/ddtwatch")
}

fn helm() -> Command {
    Command::new(tool("bin/helm"))
}

/// `helm template` of `chart` with extra args; the documents parsed.
fn template(chart: &Path, args: &[&str]) -> (String, Vec<Value>) {
    let text = ok(helm()
        .args(["template", "rel"])
        .arg(chart)
        .args(["--namespace", "ddt", "--kube-version", "1.31.0", "--api-versions", "monitoring.coreos.com/v1"])
        .args(args));
    let docs = serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    (text, docs)
}

use serde::Deserialize as _;

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs.iter().map(|d| d["kind"].as_str().unwrap().to_string()).collect();
    k.sort();
    k
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
}

/// kubernetes-validate (core kinds, strict) and the prometheus-operator models (CRs).
fn validate(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("rendered.yaml");
    std::fs::write(&f, text).unwrap();
    ok(Command::new(tool("venv/bin/kubernetes-validate")).args(["--strict", "-k", "1.31.0", "--quiet"]).arg(&f));
    let script = common::repo().join("../shared/tools/monitoring-check/validate_crs.py");
    assert!(script.exists(), "{} (the shared monitoring-check helpers) missing", script.display());
    ok(Command::new(tool("venv/bin/python")).arg(script).arg(&f));
}

fn values(name: &str) -> String {
    chart().join("ci").join(name).to_string_lossy().to_string()
}

#[test]
fn lint_strict_for_defaults_all_toggles_and_the_sidecar_workload() {
    ok(helm().args(["lint", "--strict"]).arg(chart()));
    ok(helm().args(["lint", "--strict"]).arg(chart()).args(["-f", &values("all-on.yaml")]));
    ok(helm().args(["lint", "--strict"]).arg(common::repo().join("tests/helm/sidecar-parent")));
}

#[test]
fn a_wrong_type_or_unknown_key_fails_schema_validation() {
    for cmd in ["lint", "template"] {
        let out = run(helm().arg(cmd).arg(chart()).args(["-f", &values("wrong-type.yaml")]));
        assert!(!out.status.success(), "{cmd} accepted a wrong type");
        let all = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(all.contains("replicaCount: Invalid type. Expected: integer, given: string"), "{all}");
        assert!(all.contains("Additional property replicas is not allowed"), "{all}");
    }
    // One existing claim cannot serve two instances.
    let out = run(helm()
        .arg("template")
        .arg(chart())
        .args(["--set", "replicaCount=2,persistence.enabled=true,persistence.existingClaim=x"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("existingClaim serves one instance"));
    // The chart-owned config keys are refused in `config`.
    let out = run(helm().arg("template").arg(chart()).args(["--set", "config.state_dir=/tmp"]));
    assert!(!out.status.success(), "config.state_dir is owned by the chart");
    // A log format the binary does not know is refused by the schema.
    let out = run(helm().arg("template").arg(chart()).args(["--set", "logFormat=xml"]));
    assert!(!out.status.success(), "logFormat=xml accepted");
}

#[test]
fn defaults_render_valid_manifests_with_restricted_security_and_no_secrets() {
    let (text, docs) = template(&chart(), &[]);
    validate(&text);
    assert_eq!(
        kinds(&docs),
        ["ConfigMap", "ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    );
    assert!(!text.contains("kind: Secret"), "no Secret is rendered from defaults");
    let dep = find(&docs, "Deployment", "rel-ddtwatch");
    let pod = &dep["spec"]["template"]["spec"];
    assert_restricted(pod, &pod["containers"][0]);
    assert_eq!(pod["automountServiceAccountToken"], false);
    // Standard labels everywhere.
    for d in &docs {
        let l = &d["metadata"]["labels"];
        for k in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(
                l[k].is_string(),
                "{} {} lacks {k}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            );
        }
    }
    // ConfigMaps mounted as directories (hot reload needs the symlink swap), never subPath.
    let c = &pod["containers"][0];
    for m in c["volumeMounts"].as_sequence().unwrap() {
        assert!(m["subPath"].is_null(), "{m:?}");
    }
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["startupProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string());
    let volumes = pod["volumes"].as_sequence().unwrap();
    let state = volumes.iter().find(|v| v["name"] == "ddtwatch-state").unwrap();
    assert!(state["emptyDir"].is_mapping(), "emptyDir by default");
    // Without a volume, the audit trail goes to the audit topic (issue 19); "" turns it off.
    assert_eq!(rendered_config(&docs)["audit"]["topic"], "ddt.audit");
    // The log settings default to the binary's own.
    let env = &c["env"];
    let var = |n: &str| env.as_sequence().unwrap().iter().find(|e| e["name"] == n).map(|e| e["value"].clone());
    assert_eq!(var("DDTWATCH_LOG"), Some(ddtwatch::telemetry::DEFAULT_LOG_FILTER.into()));
    assert_eq!(var("DDTWATCH_LOG_FORMAT"), Some("json".into()));
    let (_, docs) = template(&chart(), &["--set", "kafka.auditTopic="]);
    assert!(rendered_config(&docs)["audit"].is_null());
}

/// The ddtwatch.yaml the chart renders.
fn rendered_config(docs: &[Value]) -> Value {
    serde_norway::from_str(find(docs, "ConfigMap", "rel-ddtwatch")["data"]["ddtwatch.yaml"].as_str().unwrap()).unwrap()
}

fn assert_restricted(pod: &Value, c: &Value) {
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(sc["privileged"].is_null() || sc["privileged"] == false);
}

/// Writes the rendered ConfigMaps as the pod sees them and runs `ddtwatch check-config`.
fn check_rendered_config(docs: &[Value]) {
    let dir = tempfile::tempdir().unwrap();
    let cm = find(docs, "ConfigMap", "rel-ddtwatch");
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::create_dir_all(dir.path().join("profiles")).unwrap();
    let cfg = dir.path().join("config/ddtwatch.yaml");
    std::fs::write(&cfg, cm["data"]["ddtwatch.yaml"].as_str().unwrap()).unwrap();
    let profiles = find(docs, "ConfigMap", "rel-ddtwatch-profiles");
    let files = profiles["data"].as_mapping().unwrap();
    assert!(files.len() >= 2, "lfr and anpr profiles shipped");
    for (k, v) in files {
        let name = k.as_str().unwrap();
        std::fs::write(dir.path().join("profiles").join(name), v.as_str().unwrap()).unwrap();
        // The shipped profiles, not copies that could drift.
        let shipped = std::fs::read_to_string(common::repo().join("config/profiles").join(name)).unwrap();
        assert_eq!(v.as_str().unwrap(), shipped, "{name}");
    }
    // The Secrets the chart mounts do not exist here.
    let out = ok(Command::new(common::bin()).args(["check-config", "--skip-secrets"]).arg(&cfg));
    assert!(out.contains("false_alert_rate"), "{out}");
}

#[test]
fn all_toggles_render_valid_manifests_config_rules_and_dashboards() {
    let (text, docs) = template(&chart(), &["-f", &values("all-on.yaml")]);
    validate(&text);
    assert_eq!(
        kinds(&docs),
        [
            "ConfigMap",
            "ConfigMap",
            "ConfigMap",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
            "StatefulSet"
        ]
    );
    assert!(!text.contains("kind: Secret"), "secrets are referenced, never rendered");
    // The user's audit settings and the chart's audit topic, merged.
    let audit = &rendered_config(&docs)["audit"];
    assert_eq!(audit["topic"], "ddt.audit");
    assert_eq!(audit["key"]["file"], "/etc/ddtwatch/secrets/audit-key");
    // With persistence, a StatefulSet: each replica its own claim, never a shared outbox.
    let dep = find(&docs, "StatefulSet", "rel-ddtwatch");
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(dep["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "ddtwatch-state");
    assert_eq!(dep["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "2Gi");
    let pod = &dep["spec"]["template"]["spec"];
    assert_restricted(pod, &pod["containers"][0]);
    // The knobs people expect: the log filter ddtwatch reads, extra env and volumes, a digest,
    // scheduling, and ServiceMonitor relabelling.
    let c = &pod["containers"][0];
    let env: Vec<(String, String)> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(env.contains(&("DDTWATCH_LOG".into(), "debug,rdkafka=info".into())), "{env:?}");
    assert!(env.contains(&("DDTWATCH_LOG_FORMAT".into(), "text".into())), "{env:?}");
    assert!(env.contains(&("TZ".into(), "UTC".into())), "{env:?}");
    assert!(!env.iter().any(|(n, _)| n == "RUST_LOG"), "the binary reads DDTWATCH_LOG, not RUST_LOG");
    assert!(
        c["image"]
            .as_str()
            .unwrap()
            .ends_with("@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    );
    assert!(c["volumeMounts"].as_sequence().unwrap().iter().any(|m| m["name"] == "ca-bundle"));
    assert!(pod["volumes"].as_sequence().unwrap().iter().any(|v| v["name"] == "ca-bundle"));
    assert_eq!(pod["priorityClassName"], "ddtwatch-critical");
    assert_eq!(pod["topologySpreadConstraints"][0]["topologyKey"], "topology.kubernetes.io/zone");
    let sm = find(&docs, "ServiceMonitor", "rel-ddtwatch");
    assert_eq!(sm["spec"]["endpoints"][0]["scrapeTimeout"], "10s");
    assert_eq!(sm["spec"]["endpoints"][0]["relabelings"][0]["targetLabel"], "node");
    let refs: Vec<String> = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|v| {
            let mut n: Vec<String> = v["secret"]["secretName"].as_str().map(String::from).into_iter().collect();
            if let Some(srcs) = v["projected"]["sources"].as_sequence() {
                n.extend(srcs.iter().filter_map(|s| s["secret"]["name"].as_str().map(String::from)));
            }
            n
        })
        .collect();
    assert_eq!(refs, ["kafka-credentials", "ddtwatch-http", "ddtwatch-audit", "ddtwatch-webhook"]);
    let sm = find(&docs, "ServiceMonitor", "rel-ddtwatch");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    check_rendered_config(&docs);

    // The PrometheusRule's rules are dashboards/rules/ddtwatch.rules.yml and pass promtool.
    let pr = find(&docs, "PrometheusRule", "rel-ddtwatch");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    let groups =
        serde_norway::to_string(&serde_norway::Mapping::from_iter([("groups".into(), pr["spec"]["groups"].clone())]))
            .unwrap();
    std::fs::write(&rules, &groups).unwrap();
    ok(Command::new("promtool").args(["check", "rules"]).arg(&rules));
    let repo_rules: Value = serde_norway::from_str(
        &std::fs::read_to_string(common::repo().join("dashboards/rules/ddtwatch.rules.yml")).unwrap(),
    )
    .unwrap();
    assert_eq!(pr["spec"]["groups"], repo_rules["groups"]);

    // Dashboards: every dashboards/*.json, byte for byte, labelled for the Grafana sidecar.
    let cm = find(&docs, "ConfigMap", "rel-ddtwatch-dashboards");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let data = cm["data"].as_mapping().unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(common::repo().join("dashboards")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let key = format!("ddtwatch-{}", p.file_name().unwrap().to_string_lossy());
            assert_eq!(data[key.as_str()].as_str().unwrap(), std::fs::read_to_string(&p).unwrap().trim_end(), "{key}");
            n += 1;
        }
    }
    assert_eq!(data.len(), n);
    assert!(n >= 5);
}

#[test]
fn sidecar_mode_injects_a_native_sidecar_into_a_workload() {
    let (text, docs) = template(&common::repo().join("tests/helm/sidecar-parent"), &[]);
    validate(&text);
    assert_eq!(kinds(&docs), ["ConfigMap", "ConfigMap", "Deployment", "Service", "ServiceMonitor"]);
    let dep = find(&docs, "Deployment", "lfr-matcher");
    let pod = &dep["spec"]["template"]["spec"];
    let sidecar = &pod["initContainers"][0];
    assert_eq!(sidecar["name"], "ddtwatch");
    assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar (init container that keeps running)");
    assert_restricted(pod, sidecar);
    // Its volumes point at the ConfigMaps the subchart rendered.
    let cms: Vec<&str> =
        pod["volumes"].as_sequence().unwrap().iter().filter_map(|v| v["configMap"]["name"].as_str()).collect();
    assert_eq!(cms, ["rel-ddtwatch", "rel-ddtwatch-profiles"]);
    // The Service reaches ddtwatch's port in the workload's pods.
    let svc = find(&docs, "Service", "rel-ddtwatch");
    assert_eq!(svc["spec"]["selector"]["app"], "lfr-matcher");
    assert!(!docs.iter().any(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "rel-ddtwatch"));
    check_rendered_config(&docs);
}

/// Issue 19: a config change reaches running pods through the mounted ConfigMap (hot reload),
/// so by default the pod template carries no config checksum (which would roll every pod and
/// throw away their outboxes); `rolloutOnConfigChange: true` restores it. The grace period
/// Kubernetes gives a pod follows the config's shutdown grace.
#[test]
fn config_changes_do_not_roll_pods_and_the_grace_period_follows_the_shutdown_grace() {
    let pod_of = |args: &[&str]| {
        let (_, docs) = template(&chart(), args);
        find(&docs, "Deployment", "rel-ddtwatch")["spec"]["template"].clone()
    };
    // The derived grace renders a valid manifest (schema-checked once; the rest only differ in
    // numbers and one annotation).
    validate(&template(&chart(), &["--set-string", "config.engine.shutdown_grace=1500ms"]).0);
    let default = pod_of(&[]);
    assert!(default["metadata"]["annotations"]["ddtwatch.io/config-sha256"].is_null(), "{default:?}");
    // 10 s HTTP drain + 2 × the 10s shutdown grace (sources, then the outbox) + 5 s margin.
    assert_eq!(default["spec"]["terminationGracePeriodSeconds"], 45);
    // Two configs differing only in a condition-irrelevant setting render identical pod templates.
    let a = pod_of(&["--set", "config.reload_interval=5s"]);
    let b = pod_of(&["--set", "config.reload_interval=7s"]);
    assert_eq!(a, b, "a config change must not change the pod template");

    let rolled = pod_of(&["--set", "rolloutOnConfigChange=true"]);
    let sum = rolled["metadata"]["annotations"]["ddtwatch.io/config-sha256"].as_str().unwrap().to_string();
    assert_eq!(sum.len(), 64);
    let rolled2 = pod_of(&["--set", "rolloutOnConfigChange=true", "--set", "config.reload_interval=7s"]);
    assert_ne!(rolled2["metadata"]["annotations"]["ddtwatch.io/config-sha256"].as_str().unwrap(), sum);

    for (grace, want) in [("1m", 195), ("1500ms", 21), ("45s", 150), ("2h", 21615)] {
        let p = pod_of(&["--set-string", &format!("config.engine.shutdown_grace={grace}")]);
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], want, "shutdown_grace {grace}");
    }
    // An explicit value wins.
    let p = pod_of(&["--set", "terminationGracePeriodSeconds=90", "--set-string", "config.engine.shutdown_grace=1m"]);
    assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 90);
}

/// NOTES.txt as `helm install` prints it: helm renders NOTES only at install time (a cluster is
/// needed), so a copy of the chart renders it as a named template inside a YAML document.
fn notes(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ddtwatch");
    ok(Command::new("cp").arg("-rL").arg(chart()).arg(&copy));
    let text = std::fs::read_to_string(copy.join("templates/NOTES.txt")).unwrap();
    std::fs::write(
        copy.join("templates/zz-notes.yaml"),
        format!(
            "{{{{- define \"notes-under-test\" }}}}{text}{{{{- end }}}}\nnotes: |\n{{{{ include \"notes-under-test\" . | indent 2 }}}}\n"
        ),
    )
    .unwrap();
    let mut all = vec!["--show-only", "templates/zz-notes.yaml"];
    all.extend_from_slice(args);
    let (_, docs) = template(&copy, &all);
    docs[0]["notes"].as_str().unwrap().to_string()
}

#[test]
fn notes_tell_how_to_reach_the_api_and_dashboards_and_what_survives_the_pod() {
    let n = notes(&[]);
    for want in [
        "port-forward svc/rel-ddtwatch 9464:9464",
        "/api/v1/deployments",
        "set dashboards.enabled=true",
        "set serviceMonitor.enabled=true",
        "audit topic\n(ddt.audit)",
    ] {
        assert!(n.contains(want), "missing {want:?} in:\n{n}");
    }
    assert!(!n.contains("WARNING"), "no port warning in standalone mode:\n{n}");
    let n = notes(&["--set", "dashboards.enabled=true,serviceMonitor.enabled=true,kafka.auditTopic="]);
    assert!(n.contains("the ConfigMap rel-ddtwatch-dashboards"), "{n}");
    assert!(!n.contains("set serviceMonitor.enabled=true"), "{n}");
    assert!(n.contains("the audit log is lost with the pod"), "{n}");
    let n = notes(&["--set", "mode=sidecar"]);
    assert!(n.contains("port 9464 is also\nthe OpenTelemetry"), "{n}");
    assert!(!notes(&["--set", "mode=sidecar,port=9470"]).contains("WARNING"));
}
