//! The manifests in deploy/kubernetes/, offline: every document validates
//! against the official Kubernetes JSON schemas of the version the
//! controller targets (kubernetes-validate, strict: required fields, types,
//! unknown fields; installed by scripts/setup, and its absence is a
//! failure), and parses into its k8s-openapi type with nothing lost (an
//! unknown or misspelt field makes the re-serialised document differ); the
//! PrescientPolicy example of docs/kubernetes.md validates against the
//! CRD's own schema (its enums, types and required fields); the CRD is the one the code
//! generates; and the ClusterRole grants exactly the API calls the
//! controller makes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use prescient_kube::PrescientPolicy;
use prescient_kube::rbac::API_CALLS;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

/// Every document of every YAML file: (file, index, document as JSON).
fn documents() -> Vec<(String, usize, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("deploy/kubernetes/ is readable")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let v = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{name} document {i}: not YAML: {e}"));
            if v.is_null() {
                continue;
            }
            let json = serde_json::to_value(&v)
                .unwrap_or_else(|e| panic!("{name} document {i}: not JSON-like: {e}"));
            out.push((name.clone(), i, json));
        }
    }
    out
}

/// Parses `doc` as `K` and checks that it serialises back to the same JSON.
fn round_trip<K: DeserializeOwned + serde::Serialize>(file: &str, i: usize, doc: &Value) -> K {
    let k: K = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{file} document {i}: does not parse as its kind: {e}"));
    let back = serde_json::to_value(&k).unwrap();
    assert_eq!(
        &back, doc,
        "{file} document {i}: fields were lost or changed in parsing (unknown or misspelt field?)"
    );
    k
}

/// The Kubernetes version whose schemas the manifests must meet: the API
/// the controller is built against (k8s-openapi's `v1_33`).
const KUBERNETES_VERSION: &str = "1.33.0";

/// Runs Python with `args`, failing (not skipping) when the validator is
/// not installed.
fn python(args: &[&str]) -> Output {
    let out = Command::new("python3")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("python3 does not run ({e}): run scripts/setup"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named kubernetes_validate")
            && !err.contains("No module named 'jsonschema'"),
        "kubernetes-validate is not installed: run scripts/setup\n{err}"
    );
    out
}

/// `kubernetes-validate --strict` of `files` against [`KUBERNETES_VERSION`].
fn kubernetes_validate(files: &[&Path]) -> Output {
    let mut args = vec![
        "-m",
        "kubernetes_validate",
        "--kubernetes-version",
        KUBERNETES_VERSION,
        "--strict",
    ];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    python(&args)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn yaml_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_manifest_meets_the_kubernetes_schemas() {
    let files = yaml_files();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = kubernetes_validate(&refs);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    // One line per document, each against the version asked for.
    let passed = report
        .lines()
        .filter(|l| l.contains(" passed for resource "))
        .count();
    assert_eq!(passed, documents().len(), "{report}");
    assert!(
        report
            .lines()
            .filter(|l| l.contains(" passed "))
            .all(|l| l.ends_with("against version 1.33")),
        "{report}"
    );
}

#[test]
fn the_validator_rejects_broken_manifests() {
    let tmp = std::env::temp_dir().join(format!("prescient-manifests-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let controller = std::fs::read_to_string(dir().join("controller.yaml")).unwrap();
    let rbac = std::fs::read_to_string(dir().join("rbac.yaml")).unwrap();
    // Each: (what, the committed manifest broken one way, what the
    // validator must say).
    let cases = [
        (
            "a container without its required name",
            controller.replacen("- name: controller\n          image:", "- image:", 1),
            "'name' is a required property",
        ),
        (
            "a misspelt field",
            controller.replacen("  replicas: 1\n", "  replica: 1\n", 1),
            "('replica' was unexpected)",
        ),
        (
            "a string where an integer goes",
            controller.replacen("  replicas: 1\n", "  replicas: one\n", 1),
            "'one' is not of type 'integer'",
        ),
        (
            "verbs that are not a list",
            rbac.replacen("verbs: [\"get\", \"list\", \"watch\"]", "verbs: get", 1),
            "'get' is not of type 'array'",
        ),
        (
            "an unknown apiVersion for the kind",
            controller.replacen("apiVersion: apps/v1\n", "apiVersion: apps/v1beta9\n", 1),
            // Only a warning and exit 0 from the tool: what fails it is the
            // missing "passed" line (which is why every manifest's document
            // must have one, above).
            "Couldn't find schema for kind Deployment with api version apps/v1beta9",
        ),
    ];
    for (i, (what, broken, says)) in cases.iter().enumerate() {
        let original = if broken.contains("kind: ClusterRole") {
            &rbac
        } else {
            &controller
        };
        assert_ne!(broken, original, "{what}: the manifest did not change");
        let path = tmp.join(format!("broken-{i}.yaml"));
        std::fs::write(&path, broken).unwrap();
        let out = kubernetes_validate(&[&path]);
        let report = text(&out);
        let passed = report.contains(" passed for resource ");
        assert!(
            !out.status.success() || !passed,
            "{what}: accepted\n{report}"
        );
        assert!(
            report.contains(says),
            "{what}: expected {says:?} in\n{report}"
        );
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// Validates each of `docs` (JSON) against the openAPIV3Schema of the
/// committed CRD with Python's jsonschema (kubernetes-validate's own
/// validator library); the error of each, `None` when valid.
fn against_the_crd(docs: &[serde_json::Value]) -> Vec<Option<String>> {
    let crd: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir().join("crd.yaml")).unwrap()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert!(schema.is_object(), "{crd}");
    let script = r#"
import json, sys, jsonschema
schema, docs = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
v = jsonschema.Draft202012Validator(schema)
print(json.dumps([None if v.is_valid(d) else jsonschema.exceptions.best_match(v.iter_errors(d)).message for d in docs]))
"#;
    let tmp = std::env::temp_dir().join(format!("prescient-crd-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (s, d) = (tmp.join("schema.json"), tmp.join("docs.json"));
    std::fs::write(&s, schema.to_string()).unwrap();
    std::fs::write(&d, Value::Array(docs.to_vec()).to_string()).unwrap();
    let out = python(&["-c", script, s.to_str().unwrap(), d.to_str().unwrap()]);
    std::fs::remove_dir_all(&tmp).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_documented_policy_meets_the_crd_schema() {
    // The PrescientPolicy example in docs/kubernetes.md.
    let docs = std::fs::read_to_string(dir().join("../../docs/kubernetes.md")).unwrap();
    let example = docs
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains("kind: PrescientPolicy"))
        .expect("a PrescientPolicy example in docs/kubernetes.md");
    let good: Value =
        serde_json::to_value(serde_yaml::from_str::<serde_yaml::Value>(example).unwrap()).unwrap();
    let mut bad_mode = good.clone();
    bad_mode["spec"]["mode"] = "sometimes".into();
    let mut no_selector = good.clone();
    no_selector["spec"]
        .as_object_mut()
        .unwrap()
        .remove("selector");
    let mut bad_quantile = good.clone();
    bad_quantile["spec"]["sloQuantile"] = "high".into();
    let verdicts = against_the_crd(&[good.clone(), bad_mode, no_selector, bad_quantile]);
    assert_eq!(verdicts[0], None, "{good}");
    let says = |i: usize, what: &str| {
        let v = verdicts[i]
            .clone()
            .unwrap_or_else(|| panic!("case {i} accepted"));
        assert!(v.contains(what), "case {i}: {v}");
    };
    says(1, "'sometimes' is not one of ['recommend', 'enforce']");
    says(2, "'selector' is a required property");
    says(3, "'high' is not of type 'number'");
    // And the code reads it as the CRD says.
    let p: PrescientPolicy = serde_json::from_value(good).unwrap();
    assert_eq!(p.spec.mode, Some(prescient_kube::Mode::Recommend));
}

#[test]
fn every_document_round_trips_through_its_type() {
    let mut kinds = BTreeSet::new();
    for (file, i, doc) in documents() {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "Namespace" => drop(round_trip::<Namespace>(&file, i, &doc)),
            "ServiceAccount" => drop(round_trip::<ServiceAccount>(&file, i, &doc)),
            "ClusterRole" => drop(round_trip::<ClusterRole>(&file, i, &doc)),
            "ClusterRoleBinding" => drop(round_trip::<ClusterRoleBinding>(&file, i, &doc)),
            "CustomResourceDefinition" => {
                drop(round_trip::<CustomResourceDefinition>(&file, i, &doc))
            }
            "Deployment" => {
                let d = round_trip::<Deployment>(&file, i, &doc);
                let pod = d.spec.unwrap().template.spec.unwrap();
                assert_eq!(pod.service_account_name.as_deref(), Some("prescient-kube"));
                assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
                let c = &pod.containers[0];
                let sc = c.security_context.clone().unwrap();
                assert_eq!(sc.read_only_root_filesystem, Some(true));
                assert_eq!(sc.allow_privilege_escalation, Some(false));
                assert!(c.liveness_probe.is_some() && c.readiness_probe.is_some());
                assert!(c.resources.as_ref().unwrap().requests.is_some());
                assert!(c.args.as_ref().unwrap().iter().any(|a| a == "kube"));
            }
            "DaemonSet" => {
                let d = round_trip::<DaemonSet>(&file, i, &doc);
                let pod = d.spec.unwrap().template.spec.unwrap();
                let c = &pod.containers[0];
                assert!(c.args.as_ref().unwrap().iter().any(|a| a == "agent"));
                let sc = c.security_context.clone().unwrap();
                assert_ne!(sc.privileged, Some(true), "the agent is not privileged");
                assert_eq!(sc.read_only_root_filesystem, Some(true));
                let cgroup = pod
                    .volumes
                    .unwrap()
                    .into_iter()
                    .find(|v| {
                        v.host_path
                            .as_ref()
                            .is_some_and(|h| h.path == "/sys/fs/cgroup")
                    })
                    .expect("a hostPath volume of /sys/fs/cgroup");
                assert!(
                    c.volume_mounts
                        .as_ref()
                        .unwrap()
                        .iter()
                        .any(|m| m.name == cgroup.name
                            && m.mount_path == "/sys/fs/cgroup"
                            && m.read_only != Some(true))
                );
            }
            other => panic!("{file} document {i}: unexpected kind {other:?}"),
        }
        kinds.insert(kind);
    }
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "DaemonSet",
    ] {
        assert!(kinds.contains(k), "no {k} in deploy/kubernetes/");
    }
}

#[test]
fn committed_crd_is_the_generated_one() {
    let path = dir().join("crd.yaml");
    let committed = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        committed,
        prescient_kube::crd::crd_yaml(),
        "deploy/kubernetes/crd.yaml drifted from PrescientPolicy::crd(): run `prescient kube crd > deploy/kubernetes/crd.yaml`"
    );
    let parsed: CustomResourceDefinition = serde_yaml::from_str(&committed).unwrap();
    assert_eq!(parsed, PrescientPolicy::crd());
}

#[test]
fn cluster_role_grants_exactly_what_the_controller_calls() {
    let role = documents()
        .into_iter()
        .find(|(_, _, d)| d["kind"] == "ClusterRole")
        .map(|(_, _, d)| serde_json::from_value::<ClusterRole>(d).unwrap())
        .expect("a ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role.rules.unwrap_or_default() {
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for g in rule.api_groups.unwrap_or_default() {
            for r in rule.resources.iter().flatten() {
                for v in &rule.verbs {
                    assert!(
                        g != "*" && r != "*" && v != "*",
                        "no wildcards: {g} {r} {v}"
                    );
                    granted.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    let called: BTreeSet<(String, String, String)> = API_CALLS
        .iter()
        .flat_map(|c| {
            c.verbs
                .iter()
                .map(|v| (c.group.to_string(), c.resource.to_string(), v.to_string()))
        })
        .collect();
    let extra: Vec<_> = granted.difference(&called).collect();
    let missing: Vec<_> = called.difference(&granted).collect();
    assert!(extra.is_empty(), "granted but never called: {extra:?}");
    assert!(missing.is_empty(), "called but not granted: {missing:?}");
    let binding = documents()
        .into_iter()
        .find(|(_, _, d)| d["kind"] == "ClusterRoleBinding")
        .map(|(_, _, d)| serde_json::from_value::<ClusterRoleBinding>(d).unwrap())
        .unwrap();
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
}
