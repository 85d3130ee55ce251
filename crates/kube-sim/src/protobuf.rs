//! Decoding of the Kubernetes protobuf wire format for the request bodies that typed
//! client-go clients send as protobuf (kubectl 1.3x and helm use protobuf for built-in kinds).
//!
//! Only the kinds such clients write in practice are described: Secret (helm's release
//! storage), ConfigMap, Namespace, Eviction and DeleteOptions. Other kinds are answered
//! with 415, which names the kind.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// The magic prefix of a protobuf-encoded Kubernetes object.
const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bytes,
    Int,
    Bool,
    Time,
    Msg(&'static [Field]),
    StrMap,
    BytesMap,
}

type Field = (u64, &'static str, Ty, bool);

const OWNER_REF: &[Field] = &[
    (1, "kind", Ty::Str, false),
    (3, "name", Ty::Str, false),
    (4, "uid", Ty::Str, false),
    (5, "apiVersion", Ty::Str, false),
    (6, "controller", Ty::Bool, false),
    (7, "blockOwnerDeletion", Ty::Bool, false),
];

const OBJECT_META: &[Field] = &[
    (1, "name", Ty::Str, false),
    (2, "generateName", Ty::Str, false),
    (3, "namespace", Ty::Str, false),
    (5, "uid", Ty::Str, false),
    (6, "resourceVersion", Ty::Str, false),
    (7, "generation", Ty::Int, false),
    (8, "creationTimestamp", Ty::Time, false),
    (9, "deletionTimestamp", Ty::Time, false),
    (10, "deletionGracePeriodSeconds", Ty::Int, false),
    (11, "labels", Ty::StrMap, false),
    (12, "annotations", Ty::StrMap, false),
    (13, "ownerReferences", Ty::Msg(OWNER_REF), true),
    (14, "finalizers", Ty::Str, true),
];

const SECRET: &[Field] = &[
    (1, "metadata", Ty::Msg(OBJECT_META), false),
    (2, "data", Ty::BytesMap, false),
    (3, "type", Ty::Str, false),
    (4, "stringData", Ty::StrMap, false),
    (5, "immutable", Ty::Bool, false),
];

const CONFIG_MAP: &[Field] = &[
    (1, "metadata", Ty::Msg(OBJECT_META), false),
    (2, "data", Ty::StrMap, false),
    (3, "binaryData", Ty::BytesMap, false),
    (4, "immutable", Ty::Bool, false),
];

const NAMESPACE_SPEC: &[Field] = &[(1, "finalizers", Ty::Str, true)];
const NAMESPACE: &[Field] = &[
    (1, "metadata", Ty::Msg(OBJECT_META), false),
    (2, "spec", Ty::Msg(NAMESPACE_SPEC), false),
];

const PRECONDITIONS: &[Field] = &[
    (1, "uid", Ty::Str, false),
    (2, "resourceVersion", Ty::Str, false),
];
const DELETE_OPTIONS: &[Field] = &[
    (1, "gracePeriodSeconds", Ty::Int, false),
    (2, "preconditions", Ty::Msg(PRECONDITIONS), false),
    (3, "orphanDependents", Ty::Bool, false),
    (4, "propagationPolicy", Ty::Str, false),
    (5, "dryRun", Ty::Str, true),
];
const EVICTION: &[Field] = &[
    (1, "metadata", Ty::Msg(OBJECT_META), false),
    (2, "deleteOptions", Ty::Msg(DELETE_OPTIONS), false),
];

const TYPE_META: &[Field] = &[
    (1, "apiVersion", Ty::Str, false),
    (2, "kind", Ty::Str, false),
];
const UNKNOWN: &[Field] = &[
    (1, "typeMeta", Ty::Msg(TYPE_META), false),
    (2, "raw", Ty::Bytes, false),
];

fn schema_for(kind: &str) -> Option<&'static [Field]> {
    Some(match kind {
        "Secret" => SECRET,
        "ConfigMap" => CONFIG_MAP,
        "Namespace" => NAMESPACE,
        "DeleteOptions" => DELETE_OPTIONS,
        "Eviction" => EVICTION,
        _ => return None,
    })
}

fn malformed() -> ApiError {
    ApiError::bad_request("the protobuf request body is malformed")
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(malformed)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(malformed())
}

/// Splits a message into (field number, wire type, payload) entries; varints are returned
/// as their value in `int`, length-delimited fields as bytes.
/// One decoded field: number, wire type and raw payload.
type RawField<'a> = (u64, u64, &'a [u8]);

fn fields(buf: &[u8]) -> Result<Vec<RawField<'_>>, ApiError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let start = pos;
                varint(buf, &mut pos)?;
                out.push((number, wire, &buf[start..pos]));
            }
            1 => {
                out.push((number, wire, buf.get(pos..pos + 8).ok_or_else(malformed)?));
                pos += 8;
            }
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                out.push((number, wire, buf.get(pos..pos + len).ok_or_else(malformed)?));
                pos += len;
            }
            5 => {
                out.push((number, wire, buf.get(pos..pos + 4).ok_or_else(malformed)?));
                pos += 4;
            }
            _ => return Err(malformed()),
        }
    }
    Ok(out)
}

fn as_string(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| malformed())
}

fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), ApiError> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (n, _, payload) in fields(b)? {
        match n {
            1 => key = as_string(payload)?,
            2 => {
                value = if bytes_value {
                    json!(base64::engine::general_purpose::STANDARD.encode(payload))
                } else {
                    json!(as_string(payload)?)
                }
            }
            _ => {}
        }
    }
    Ok((key, value))
}

fn decode_message(buf: &[u8], schema: &[Field]) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for (n, _, payload) in fields(buf)? {
        let Some((_, name, ty, repeated)) = schema.iter().find(|f| f.0 == n) else {
            continue;
        };
        let value = match ty {
            Ty::Str => json!(as_string(payload)?),
            Ty::Bytes => json!(base64::engine::general_purpose::STANDARD.encode(payload)),
            Ty::Int => {
                let mut p = 0;
                json!(varint(payload, &mut p)? as i64)
            }
            Ty::Bool => {
                let mut p = 0;
                json!(varint(payload, &mut p)? != 0)
            }
            Ty::Time => {
                let mut seconds = 0i64;
                for (tn, _, tp) in fields(payload)? {
                    if tn == 1 {
                        let mut p = 0;
                        seconds = varint(tp, &mut p)? as i64;
                    }
                }
                let ts = jiff::Timestamp::from_second(seconds).map_err(|_| malformed())?;
                json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            }
            Ty::Msg(inner) => decode_message(payload, inner)?,
            Ty::StrMap | Ty::BytesMap => {
                let (k, v) = map_entry(payload, matches!(ty, Ty::BytesMap))?;
                let entry = out.entry(name.to_string()).or_insert_with(|| json!({}));
                entry[k] = v;
                continue;
            }
        };
        if *repeated {
            let entry = out.entry(name.to_string()).or_insert_with(|| json!([]));
            if let Some(a) = entry.as_array_mut() {
                a.push(value);
            }
        } else {
            out.insert(name.to_string(), value);
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a protobuf-encoded object (`k8s\0` + `runtime.Unknown`) into its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| ApiError::bad_request("the protobuf body lacks the k8s magic prefix"))?;
    let unknown = decode_message(rest, UNKNOWN)?;
    let api_version = unknown["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = unknown["typeMeta"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let schema = schema_for(&kind).ok_or_else(|| {
        ApiError::unsupported_media_type(format!(
            "kube-sim decodes protobuf bodies only for Secret, ConfigMap, Namespace, Eviction and DeleteOptions, not {kind}; send application/json"
        ))
    })?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(unknown["raw"].as_str().unwrap_or_default())
        .map_err(|_| malformed())?;
    let mut obj = decode_message(&raw, schema)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_secret() {
        let meta = [
            field(1, b"sh.helm.release.v1.a.v1"),
            field(11, &[field(1, b"owner"), field(2, b"helm")].concat()),
        ]
        .concat();
        let secret = [
            field(1, &meta),
            field(2, &[field(1, b"release"), field(2, b"\x01\x02")].concat()),
            field(3, b"helm.sh/release.v1"),
        ]
        .concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &secret)].concat();
        let obj = decode(&body).unwrap();
        assert_eq!(obj["metadata"]["name"], "sh.helm.release.v1.a.v1");
        assert_eq!(obj["metadata"]["labels"]["owner"], "helm");
        assert_eq!(obj["data"]["release"], "AQI=");
        assert_eq!(obj["type"], "helm.sh/release.v1");
        assert_eq!(obj["kind"], "Secret");
    }
}
