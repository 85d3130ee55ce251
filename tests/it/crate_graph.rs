//! The crate graph the design promises, read from the manifests: the shipping commands
//! depend on neither the simulator nor the simulated provider (so building them needs no
//! `protoc`), the Terraform and Helm wrappers do not compile the knowledge base, and the
//! Kubernetes side does not depend on the Helm wrapper.

use std::collections::{BTreeMap, BTreeSet};

use upgrade_test::TestContext;

/// Each workspace package's normal (not dev) dependencies on other workspace packages.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = TestContext::workspace_root();
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let name = doc["package"]["name"].as_str().unwrap().to_string();
        let deps = doc
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|d| {
                d.keys()
                    .filter(|k| k.starts_with("upgrade-"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        graph.insert(name, deps);
    }
    graph
}

fn closure(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(next) = todo.pop() {
        for dep in graph.get(&next).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn the_commands_ship_without_the_simulators_and_the_wrappers_without_the_knowledge_base() {
    let graph = graph();
    assert!(graph.contains_key("upgrade-flows"), "{graph:?}");
    let bins = closure(&graph, "upgrade-bins");
    for simulator in [
        "upgrade-kube-sim",
        "upgrade-tf-sim-provider",
        "upgrade-demo",
    ] {
        assert!(
            !bins.contains(simulator),
            "upgrade-bins depends on {simulator}: {bins:?}"
        );
    }
    assert!(bins.contains("upgrade-flows"), "{bins:?}");
    for wrapper in ["upgrade-tf", "upgrade-helm"] {
        let deps = closure(&graph, wrapper);
        assert!(!deps.contains("upgrade-checks"), "{wrapper}: {deps:?}");
    }
    let kube = closure(&graph, "upgrade-kube");
    assert!(!kube.contains("upgrade-helm"), "{kube:?}");
    assert!(kube.contains("upgrade-helm-storage"), "{kube:?}");
    assert_eq!(
        closure(&graph, "upgrade-core"),
        BTreeSet::new(),
        "the core depends on no other crate of the toolkit"
    );
}
