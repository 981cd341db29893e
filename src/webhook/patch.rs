//! The JSON patch from the admitted pod to the injected one. Containers and volumes are
//! matched by name, not by position: putting the sidecar first is one `add`, and the pod's
//! own containers are only ever patched field by field, so fields this operator's API model
//! does not know survive admission untouched.

use std::collections::HashSet;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

/// The pod's arrays whose elements are identified by `name`.
const BY_NAME: [[&str; 2]; 3] = [
    ["spec", "initContainers"],
    ["spec", "containers"],
    ["spec", "volumes"],
];

pub fn patch(before: &Value, after: &Value) -> Patch {
    let (mut before, mut after) = (before.clone(), after.clone());
    let mut ops = Vec::new();
    for path in BY_NAME {
        let pointer = PointerBuf::from_tokens(path);
        by_name(
            &pointer,
            take(&mut before, path),
            take(&mut after, path),
            &mut ops,
        );
    }
    let mut rest = json_patch::diff(&before, &after).0;
    rest.extend(ops);
    Patch(rest)
}

/// Removes the array at `path` from `value`, so that the plain diff leaves it alone.
fn take(value: &mut Value, [parent, field]: [&str; 2]) -> Option<Vec<Value>> {
    match value.get_mut(parent)?.as_object_mut()?.remove(field)? {
        Value::Array(items) => Some(items),
        _ => None,
    }
}

fn name(item: &Value) -> Option<&Value> {
    item.get("name")
}

fn at(pointer: &PointerBuf, index: usize) -> PointerBuf {
    let mut pointer = pointer.clone();
    pointer.push_back(index);
    pointer
}

fn by_name(
    pointer: &PointerBuf,
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
    ops: &mut Vec<PatchOperation>,
) {
    let (mut current, wanted) = match (before, after) {
        (None, None) => return,
        (Some(_), None) => {
            return ops.push(PatchOperation::Remove(RemoveOperation {
                path: pointer.clone(),
            }));
        }
        (None, Some(after)) => {
            let value = Value::Array(after);
            return ops.push(PatchOperation::Add(AddOperation {
                path: pointer.clone(),
                value,
            }));
        }
        (Some(before), Some(after)) => (before, after),
    };
    // A set, not a scan of `wanted` per element: a pod may carry thousands of containers.
    let wanted_names: HashSet<Option<&Value>> = wanted.iter().map(name).collect();
    for index in (0..current.len()).rev() {
        if !wanted_names.contains(&name(&current[index])) {
            ops.push(PatchOperation::Remove(RemoveOperation {
                path: at(pointer, index),
            }));
            current.remove(index);
        }
    }
    for (index, want) in wanted.into_iter().enumerate() {
        if let Some(have) = current.get(index).filter(|have| name(have) == name(&want)) {
            ops.extend(
                json_patch::diff(have, &want)
                    .0
                    .into_iter()
                    .map(|op| rebase(op, &at(pointer, index), &want)),
            );
            continue;
        }
        // Elsewhere (our sidecar, moved back to the front): taken out, put in place.
        if let Some(moved) = current.iter().position(|have| name(have) == name(&want)) {
            ops.push(PatchOperation::Remove(RemoveOperation {
                path: at(pointer, moved),
            }));
            current.remove(moved);
        }
        ops.push(PatchOperation::Add(AddOperation {
            path: at(pointer, index),
            value: want.clone(),
        }));
        current.insert(index, want);
    }
}

/// An operation of a diff between two elements, moved under the element's path.
fn rebase(op: PatchOperation, element: &PointerBuf, wanted: &Value) -> PatchOperation {
    match op {
        PatchOperation::Add(AddOperation { path, value }) => PatchOperation::Add(AddOperation {
            path: element.concat(&path),
            value,
        }),
        PatchOperation::Remove(RemoveOperation { path }) => PatchOperation::Remove(RemoveOperation {
            path: element.concat(&path),
        }),
        PatchOperation::Replace(ReplaceOperation { path, value }) => {
            PatchOperation::Replace(ReplaceOperation {
                path: element.concat(&path),
                value,
            })
        }
        // A diff makes nothing else; should it ever, the element is replaced whole.
        _ => PatchOperation::Replace(ReplaceOperation {
            path: element.clone(),
            value: wanted.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn applied(before: &Value, after: &Value) -> Value {
        let mut doc = before.clone();
        json_patch::patch(&mut doc, &patch(before, after)).unwrap();
        doc
    }

    #[test]
    fn a_container_put_first_is_one_add_and_the_others_keep_unknown_fields() {
        // What the API server holds: a field the operator's model does not know.
        let raw = json!({"spec": {
            "initContainers": [{"name": "setup", "image": "setup:1", "futureField": 7}],
            "containers": [{"name": "worker", "image": "worker:1", "futureField": 8}],
        }});
        // What the operator saw (its model dropped the field) and wants.
        let seen = json!({"spec": {
            "initContainers": [{"name": "setup", "image": "setup:1"}],
            "containers": [{"name": "worker", "image": "worker:1"}],
        }});
        let wanted = json!({"metadata": {"annotations": {"claimcheck.dev/injected": "x"}}, "spec": {
            "initContainers": [{"name": "claimcheck-proxy"}, {"name": "setup", "image": "setup:1"}],
            "containers": [{"name": "worker", "image": "worker:1", "env": [{"name": "A", "value": "b"}]}],
            "volumes": [{"name": "claimcheck-config"}],
        }});
        let mut doc = raw.clone();
        json_patch::patch(&mut doc, &patch(&seen, &wanted)).unwrap();
        assert_eq!(doc["spec"]["initContainers"][0]["name"], "claimcheck-proxy");
        assert_eq!(doc["spec"]["initContainers"][0].get("futureField"), None);
        assert_eq!(doc["spec"]["initContainers"][1]["futureField"], 7);
        assert_eq!(doc["spec"]["containers"][0]["futureField"], 8);
        assert_eq!(doc["spec"]["containers"][0]["env"][0]["value"], "b");
        assert_eq!(doc["spec"]["volumes"][0]["name"], "claimcheck-config");
        assert_eq!(doc["metadata"]["annotations"]["claimcheck.dev/injected"], "x");
    }

    #[test]
    fn a_sidecar_pushed_back_by_another_webhook_returns_to_the_front() {
        let before =
            json!({"spec": {"initContainers": [{"name": "other"}, {"name": "claimcheck-proxy", "v": 1}]}});
        let after =
            json!({"spec": {"initContainers": [{"name": "claimcheck-proxy", "v": 2}, {"name": "other"}]}});
        assert_eq!(applied(&before, &after), after);
    }

    #[test]
    fn nothing_to_change_is_an_empty_patch() {
        let pod = json!({"spec": {"containers": [{"name": "worker"}], "volumes": [{"name": "v"}]}});
        assert!(patch(&pod, &pod).0.is_empty());
    }
}
