//! Label selector matching (matchLabels and matchExpressions), as the API server does it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `selector` selects an object with `labels`. An empty selector selects everything
/// (policy/v1 PodDisruptionBudget semantics); a missing one selects nothing.
pub fn matches(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = selector.match_expressions.iter().flatten().all(|expr| {
        let value = labels.get(&expr.key);
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An operator the API server would have rejected: match nothing, never everything.
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn every_operator() {
        let pod = labels(&[("app", "kserve"), ("tier", "web")]);
        let sel = |e: LabelSelectorRequirement| LabelSelector {
            match_expressions: Some(vec![e]),
            match_labels: None,
        };
        assert!(matches(
            Some(&sel(expr("app", "In", &["kserve", "x"]))),
            &pod
        ));
        assert!(!matches(Some(&sel(expr("app", "In", &["x"]))), &pod));
        assert!(matches(Some(&sel(expr("app", "NotIn", &["x"]))), &pod));
        assert!(matches(Some(&sel(expr("zone", "NotIn", &["x"]))), &pod));
        assert!(matches(Some(&sel(expr("tier", "Exists", &[]))), &pod));
        assert!(!matches(
            Some(&sel(expr("tier", "DoesNotExist", &[]))),
            &pod
        ));
        assert!(!matches(Some(&sel(expr("tier", "Bogus", &[]))), &pod));
        let by_labels = LabelSelector {
            match_labels: Some(labels(&[("app", "kserve")])),
            match_expressions: None,
        };
        assert!(matches(Some(&by_labels), &pod));
        assert!(
            matches(Some(&LabelSelector::default()), &pod),
            "empty selects all"
        );
        assert!(!matches(None, &pod), "absent selects none");
    }
}
