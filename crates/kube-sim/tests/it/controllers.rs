//! The simulated controllers: scheduling by resources, taints and selectors; StatefulSets;
//! Jobs; deletion propagation.

use std::time::Duration;

use kube::api::{Api, DeleteParams, PropagationPolicy};
use kube_sim::store::Propagation;
use serde_json::Value;

use crate::support::{start, wait_for};

fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_honours_requests_taints_and_selectors() {
    let sim = start(&["small", "tainted"]).await;
    let nodes = sim
        .store()
        .registry()
        .lookup("", "v1", "nodes")
        .expect("nodes");
    sim.store()
        .mutate(&nodes, None, "tainted", kube_sim::store::Target::Main, &Default::default(), |n| {
            n["spec"]["taints"] = serde_json::json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
            Ok(())
        })
        .expect("taint");
    sim.load_yaml(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  containers: [{name: c, image: i, resources: {requests: {cpu: "64", memory: 1Gi}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers: [{name: c, image: i, resources: {requests: {cpu: 500m}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: gpu}
spec:
  nodeSelector: {kubernetes.io/hostname: tainted}
  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]
  containers: [{name: c, image: i}]
---
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec:
  nodeSelector: {kubernetes.io/hostname: tainted}
  containers: [{name: c, image: i}]
"#,
    )
    .expect("pods");
    let pod = |name: &str| sim.get("v1", "Pod", Some("default"), name).expect("pod");
    wait_for(
        "plain and gpu pods running",
        Duration::from_secs(10),
        || {
            (pod("plain")["status"]["phase"] == "Running"
                && pod("gpu")["status"]["phase"] == "Running")
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        pod("plain")["spec"]["nodeName"],
        "small",
        "the taint keeps intolerant pods away"
    );
    assert_eq!(pod("gpu")["spec"]["nodeName"], "tainted");
    let huge = wait_for(
        "huge pod marked unschedulable",
        Duration::from_secs(10),
        || {
            let p = pod("huge");
            condition(&p, "PodScheduled")
                .filter(|c| c["status"] == "False")
                .cloned()
        },
    )
    .await;
    assert_eq!(huge["reason"], "Unschedulable");
    let message = huge["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("0/2 nodes are available:")
            && message.contains("Insufficient cpu")
            && message.contains("untolerated taint"),
        "{message}"
    );
    let nowhere = wait_for("nowhere pod unschedulable", Duration::from_secs(10), || {
        condition(&pod("nowhere"), "PodScheduled").cloned()
    })
    .await;
    assert_eq!(nowhere["status"], "False");
    assert!(pod("huge")["spec"]["nodeName"].is_null());
    let events = sim.list("v1", "Event", Some("default"));
    let about = |pod: &str, reason: &str| {
        events
            .iter()
            .find(|e| e["involvedObject"]["name"] == pod && e["reason"] == reason)
            .cloned()
    };
    let failed = about("huge", "FailedScheduling").expect("a FailedScheduling event");
    assert_eq!(failed["type"], "Warning");
    assert_eq!(failed["message"], huge["message"]);
    assert_eq!(
        about("plain", "Scheduled").expect("a Scheduled event")["message"],
        "Successfully assigned default/plain to small"
    );
    assert!(about("plain", "Started").is_some());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulsets_jobs_and_deletion_propagation() {
    let sim = start(&["node-a", "node-b"]).await;
    sim.load_yaml(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: "db:1"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: "m:1"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  backoffLimit: 1
  template:
    metadata:
      annotations: {kube-sim.dev/exit-code: "3"}
    spec:
      restartPolicy: Never
      containers: [{name: m, image: "m:1"}]
"#,
    )
    .expect("load");
    let sts = wait_for("statefulset ready", Duration::from_secs(10), || {
        let s = sim
            .get("apps/v1", "StatefulSet", Some("default"), "db")
            .ok()?;
        (s["status"]["readyReplicas"] == 2).then_some(s)
    })
    .await;
    assert_eq!(
        sts["status"]["currentRevision"],
        sts["status"]["updateRevision"]
    );
    let mut names: Vec<String> = sim
        .list("v1", "Pod", Some("default"))
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "db")
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1"]);
    let job = wait_for("job complete", Duration::from_secs(10), || {
        let j = sim
            .get("batch/v1", "Job", Some("default"), "migrate")
            .ok()?;
        condition(&j, "Complete")
            .filter(|c| c["status"] == "True")
            .map(|_| j.clone())
    })
    .await;
    assert_eq!(job["status"]["succeeded"], 1);
    assert!(job["status"]["completionTime"].is_string());
    let broken = wait_for("job failed", Duration::from_secs(10), || {
        let j = sim.get("batch/v1", "Job", Some("default"), "broken").ok()?;
        condition(&j, "Failed")
            .filter(|c| c["status"] == "True")
            .map(|_| j.clone())
    })
    .await;
    assert_eq!(
        broken["status"]["failed"], 2,
        "backoffLimit 1 allows one retry"
    );

    // Orphan keeps the pods (without their owner); background deletes them.
    let client = sim.client().expect("client");
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(client.clone(), "default");
    sets.delete(
        "db",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await
    .expect("orphan delete");
    let db0 = sim
        .get("v1", "Pod", Some("default"), "db-0")
        .expect("orphaned pod stays");
    assert!(
        db0["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty())
    );
    let jobs = sim
        .store()
        .registry()
        .lookup("batch", "v1", "jobs")
        .expect("jobs");
    sim.store()
        .delete(
            &jobs,
            Some("default"),
            "migrate",
            Propagation::Background,
            &Default::default(),
        )
        .expect("delete job");
    assert!(sim.list("v1", "Pod", Some("default")).iter().all(|p| {
        !p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("migrate-")
    }));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_readiness_and_crash_loops_reach_pods() {
    let sim = start(&["node-a"]).await;
    sim.load_yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "api:1"}]
---
apiVersion: v1
kind: Pod
metadata:
  name: crasher
  annotations: {kube-sim.dev/crash-loop: "true"}
spec:
  containers: [{name: c, image: "c:1"}]
"#,
    )
    .expect("load");
    crate::support::deployment_available(&sim, "default", "api", 1).await;
    let crasher = wait_for("crash loop", Duration::from_secs(10), || {
        let p = sim.get("v1", "Pod", Some("default"), "crasher").ok()?;
        (p["status"]["phase"] == "Running").then_some(p)
    })
    .await;
    let state = &crasher["status"]["containerStatuses"][0];
    assert_eq!(state["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(state["restartCount"], 5);
    assert_eq!(
        condition(&crasher, "Ready").expect("Ready")["status"],
        "False"
    );

    sim.set_node_ready("node-a", false).expect("node down");
    wait_for("deployment unavailable", Duration::from_secs(10), || {
        let d = sim
            .get("apps/v1", "Deployment", Some("default"), "api")
            .ok()?;
        (d["status"]["availableReplicas"] == 0).then_some(())
    })
    .await;
    sim.set_node_ready("node-a", true).expect("node back");
    crate::support::deployment_available(&sim, "default", "api", 1).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_bind_and_load_balancers_get_hostnames() {
    let sim = start(&["node-a"]).await;
    sim.load_yaml(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: gp3
  resources: {requests: {storage: 10Gi}}
---
apiVersion: v1
kind: Service
metadata: {name: public}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules: [{host: web.example.com}]
"#,
    )
    .expect("load");
    let pvc = wait_for("claim bound", Duration::from_secs(10), || {
        let c = sim
            .get("v1", "PersistentVolumeClaim", Some("default"), "data")
            .ok()?;
        (c["status"]["phase"] == "Bound").then_some(c)
    })
    .await;
    let volume = pvc["spec"]["volumeName"].as_str().expect("volumeName");
    let pv = sim
        .get("v1", "PersistentVolume", None, volume)
        .expect("the volume exists");
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
    assert_eq!(pv["spec"]["capacity"]["storage"], "10Gi");
    for (api_version, kind, name) in [
        ("v1", "Service", "public"),
        ("networking.k8s.io/v1", "Ingress", "web"),
    ] {
        let host = wait_for("load balancer hostname", Duration::from_secs(10), || {
            let o = sim.get(api_version, kind, Some("default"), name).ok()?;
            o["status"]["loadBalancer"]["ingress"][0]["hostname"]
                .as_str()
                .map(str::to_string)
        })
        .await;
        assert!(
            host.starts_with(&format!("{name}-")) && host.ends_with(".elb.us-east-1.amazonaws.com"),
            "{host}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_respects_max_unavailable_and_max_surge() {
    let sim = start(&["node-a", "node-b"]).await;
    let manifest = |image: &str| {
        format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api}}
spec:
  replicas: 4
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 0, maxUnavailable: 1}}}}
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers: [{{name: api, image: "{image}"}}]
"#
        )
    };
    sim.load_yaml(&manifest("api:1")).expect("load");
    crate::support::deployment_available(&sim, "default", "api", 4).await;
    let deployments = sim
        .store()
        .registry()
        .lookup("apps", "v1", "deployments")
        .expect("deployments");
    sim.store()
        .mutate(
            &deployments,
            Some("default"),
            "api",
            kube_sim::store::Target::Main,
            &Default::default(),
            |d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"] =
                    serde_json::json!("api:2");
                Ok(())
            },
        )
        .expect("update the template");
    let (mut min_ready, mut max_pods) = (i64::MAX, 0usize);
    wait_for("rollout done", Duration::from_secs(20), || {
        let pods = sim.list("v1", "Pod", Some("default"));
        let ready = pods
            .iter()
            .filter(|p| condition(p, "Ready").is_some_and(|c| c["status"] == "True"))
            .count() as i64;
        min_ready = min_ready.min(ready);
        max_pods = max_pods.max(pods.len());
        let done = pods.len() == 4
            && ready == 4
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "api:2");
        done.then_some(())
    })
    .await;
    assert!(
        min_ready >= 3,
        "maxUnavailable 1 of 4: at least 3 ready pods throughout, saw {min_ready}"
    );
    assert!(
        max_pods <= 4,
        "maxSurge 0: never more than 4 pods, saw {max_pods}"
    );
    sim.shutdown().await;
}

/// A runtime for `tool:*` images: a job exits with the code its argv names; a server starts
/// only once `ready` is set, crash-looping until then.
struct Tool {
    ready: std::sync::atomic::AtomicBool,
    seen: std::sync::Mutex<Vec<kube_sim::ContainerStart>>,
}

impl kube_sim::ContainerRuntime for Tool {
    fn runs(&self, image: &str) -> bool {
        image.starts_with("tool:")
    }
    fn run(&self, container: &kube_sim::ContainerStart) -> i32 {
        self.seen.lock().unwrap().push(container.clone());
        if container.restarts {
            i32::from(!self.ready.load(std::sync::atomic::Ordering::SeqCst))
        } else {
            container
                .argv
                .last()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_runtime_runs_job_and_server_containers() {
    let tool = std::sync::Arc::new(Tool {
        ready: false.into(),
        seen: Default::default(),
    });
    let sim = kube_sim::SimCluster::builder()
        .controllers(kube_sim::ControllerConfig::fast())
        .container_runtime(tool.clone())
        .start()
        .await
        .expect("kube-sim starts");
    sim.add_node("node-a", "v1.30.4-eks-a737599").unwrap();
    sim.load_yaml(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: m
          image: "tool:2"
          env: [{name: CODE, value: "3"}]
          command: [migrate, "$(CODE)"]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: server}
spec:
  replicas: 1
  selector: {matchLabels: {app: server}}
  template:
    metadata: {labels: {app: server}}
    spec:
      containers: [{name: s, image: "tool:2"}]
"#,
    )
    .expect("load");
    let job = wait_for("the job to fail", Duration::from_secs(10), || {
        let j = sim
            .get("batch/v1", "Job", Some("default"), "migrate")
            .ok()?;
        condition(&j, "Failed").is_some().then_some(j)
    })
    .await;
    assert_eq!(job["status"]["failed"], 1, "{job}");
    let pods = sim.list("v1", "Pod", Some("default"));
    let job_pod = pods
        .iter()
        .find(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("migrate-")
        })
        .unwrap();
    assert_eq!(
        job_pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 3,
        "the runtime's exit code, from the expanded argv"
    );
    // The server crash-loops while it cannot start, then serves once it can.
    let crashing = wait_for("a restart", Duration::from_secs(10), || {
        sim.list("v1", "Pod", Some("default"))
            .into_iter()
            .find(|p| {
                p["status"]["containerStatuses"][0]["restartCount"]
                    .as_u64()
                    .is_some_and(|n| n >= 1)
            })
    })
    .await;
    assert_eq!(
        crashing["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "CrashLoopBackOff"
    );
    let deployment = sim
        .get("apps/v1", "Deployment", Some("default"), "server")
        .unwrap();
    assert_ne!(deployment["status"]["availableReplicas"], 1);
    tool.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    crate::support::deployment_available(&sim, "default", "server", 1).await;
    let seen = tool.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|c| c.argv == ["migrate", "3"] && !c.restarts && c.env["CODE"] == "3"),
        "{seen:?}"
    );
    sim.shutdown().await;
}

/// A pod evicted from a node whose kubelet stopped answering stays Terminating (graceful
/// deletion waits for the kubelet) while its ReplicaSet starts a replacement elsewhere; a
/// zero grace period removes it; pod GC removes the rest once the node is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_a_notready_node_stay_terminating_until_forced_or_the_node_goes() {
    let sim = start(&["node-a"]).await;
    sim.load_yaml(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n",
    )
    .unwrap();
    crate::support::deployment_available(&sim, "default", "web", 2).await;
    sim.add_node("node-b", "v1.30.4-eks-a737599").unwrap();
    sim.set_node_ready("node-a", false).unwrap();
    let client = sim.client().unwrap();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, "default");
    let on_a: Vec<String> = sim
        .list("v1", "Pod", Some("default"))
        .iter()
        .filter(|p| p["spec"]["nodeName"] == "node-a")
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(on_a.len(), 2);
    pods.evict(&on_a[0], &Default::default()).await.unwrap();
    pods.delete(&on_a[1], &DeleteParams::default())
        .await
        .unwrap();
    for name in &on_a {
        let pod = pods.get(name).await.unwrap();
        assert!(
            pod.metadata.deletion_timestamp.is_some(),
            "{name} is Terminating, not gone"
        );
        assert_eq!(pod.metadata.deletion_grace_period_seconds, Some(30));
        let ends = pod.metadata.deletion_timestamp.unwrap().0;
        assert!(
            ends > jiff::Timestamp::now() + jiff::SignedDuration::from_secs(20),
            "deletionTimestamp is when the grace period ends, as upstream: {ends}"
        );
    }
    // The ReplicaSet does not count Terminating pods: two new pods on node-b.
    crate::support::deployment_available(&sim, "default", "web", 2).await;
    pods.delete(&on_a[0], &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get_opt(&on_a[0]).await.unwrap().is_none(), "forced");
    assert!(pods.get_opt(&on_a[1]).await.unwrap().is_some());
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(sim.client().unwrap());
    nodes
        .delete("node-a", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("pod GC", Duration::from_secs(10), || {
        sim.get("v1", "Pod", Some("default"), &on_a[1])
            .is_err()
            .then_some(())
    })
    .await;
    sim.shutdown().await;
}

/// With Karpenter's NodeClaim CRD loaded (from the upstream chart), Karpenter's nodes have
/// NodeClaims; deleting one terminates its node, as Karpenter does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_nodeclaim_terminates_its_node() {
    let sim = kube_sim::SimCluster::builder()
        .controllers(kube_sim::ControllerConfig {
            karpenter: true,
            ..kube_sim::ControllerConfig::fast()
        })
        .start()
        .await
        .unwrap();
    let crd = upgrade_test::TestContext::upstream_charts_dir()
        .join("karpenter/1.5.0/karpenter/crds/karpenter.sh_nodeclaims.yaml");
    sim.load_yaml(&std::fs::read_to_string(&crd).unwrap())
        .unwrap();
    sim.add_node("ip-10-0-1-5", kube_sim::DEFAULT_SERVER_VERSION)
        .unwrap();
    sim.make_karpenter_node("ip-10-0-1-5", "default").unwrap();
    let claims = sim.list("karpenter.sh/v1", "NodeClaim", None);
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert_eq!(claims[0]["status"]["nodeName"], "ip-10-0-1-5");
    let claim = claims[0]["metadata"]["name"].as_str().unwrap().to_string();
    let api: Api<kube::api::DynamicObject> = Api::all_with(
        sim.client().unwrap(),
        &kube::api::ApiResource {
            group: "karpenter.sh".into(),
            version: "v1".into(),
            api_version: "karpenter.sh/v1".into(),
            kind: "NodeClaim".into(),
            plural: "nodeclaims".into(),
        },
    );
    api.delete(&claim, &DeleteParams::default()).await.unwrap();
    wait_for("the node terminated", Duration::from_secs(10), || {
        (sim.get("v1", "Node", None, "ip-10-0-1-5").is_err()
            && sim.list("karpenter.sh/v1", "NodeClaim", None).is_empty())
        .then_some(())
    })
    .await;
    sim.shutdown().await;
}
