//! Helm 3 and Helm 4 release records, decoded in one place.
//!
//! Every revision of a release is one Secret (Helm's default driver) or ConfigMap
//! (`HELM_DRIVER=configmap`) named `sh.helm.release.v1.NAME.vN`, whose `release` key holds
//! base64(gzip(JSON)) of the release record. [`codec`] decodes and encodes it; [`record`] holds
//! the record's types (status, info, hooks, Chart.yaml metadata), which `upgrade-helm`
//! re-exports for what `helm` prints and `upgrade-kube` uses to read releases for the
//! preflight facts. Neither wrapper depends on the other; both depend on this crate.
//!
//! ```
//! use upgrade_helm_storage::codec::{decode_release, encode_release, parse_object_name};
//!
//! let json = br#"{"name":"kserve","namespace":"kserve","version":3,
//!                 "info":{"status":"deployed"},"manifest":"---\nkind: Service\n"}"#;
//! let payload = encode_release(json); // what Helm writes into the Secret's `release` key
//! let release = decode_release("kserve/sh.helm.release.v1.kserve.v3", payload.as_bytes()).unwrap();
//! assert_eq!(release.version, 3);
//! assert_eq!(release.status().as_str(), "deployed");
//! assert_eq!(parse_object_name("sh.helm.release.v1.kserve.v3"), Some(("kserve", 3)));
//! ```

pub mod codec;
pub mod record;

pub use codec::{StorageDriver, StorageError, StoredChart, StoredRelease, decode_release};
pub use record::{ChartMetadata, ReleaseRef, ReleaseStatus};
