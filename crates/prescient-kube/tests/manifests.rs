//! The manifests in deploy/kubernetes/, offline: every document parses
//! into its k8s-openapi type with nothing lost (an unknown or misspelt
//! field makes the re-serialised document differ), the CRD is the one the
//! code generates, and the ClusterRole grants exactly the API calls the
//! controller makes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
