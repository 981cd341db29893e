//! Which fields of which Temporal messages can lead to a `Payload`, derived at start-up
//! from the descriptor set compiled by `temporalio-protos`.
//!
//! Only messages that can reach a payload get a plan; everything else is copied as raw
//! bytes by the rewriter. `SearchAttributes` is never entered: the server indexes it.

use std::collections::{HashMap, HashSet};

use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};

const PAYLOAD: &str = "temporal.api.common.v1.Payload";
const ANY: &str = "google.protobuf.Any";
const SEARCH_ATTRIBUTES: &str = "temporal.api.common.v1.SearchAttributes";
const RPC_STATUS: &str = "google.rpc.Status";
const PROXIED_SERVICES: [&str; 2] = [
    "temporal.api.workflowservice.v1.WorkflowService",
    "temporal.api.operatorservice.v1.OperatorService",
];

/// Index of a message plan inside a [`Schema`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MsgId(u32);

/// What the rewriter finds behind a field (or at the root of a walk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Payload,
    Message(MsgId),
    /// A `google.protobuf.Any`, resolved through its type URL when it is walked.
    Any,
}

/// The request and response types of one gRPC method, by its HTTP/2 path.
#[derive(Debug, Clone, Copy)]
pub struct Method {
    pub request: Option<Node>,
    pub response: Option<Node>,
    /// Number of the request's top-level `namespace` string field, if it has one.
    pub namespace_field: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot decode the Temporal descriptor set: {0}")]
    Decode(#[from] prost_reflect::DescriptorError),
    #[error("the descriptor set lacks {0}")]
    Missing(&'static str),
}

#[derive(Debug)]
pub struct Schema {
    /// Per message plan: the fields that can lead to a payload, sorted by number.
    plans: Vec<Vec<(u32, Node)>>,
    by_name: HashMap<String, MsgId>,
    methods: HashMap<String, Method>,
    status: Option<Node>,
}

impl Schema {
    /// The schema of the Temporal API version this binary was built with.
    pub fn temporal() -> Result<Self, SchemaError> {
        let bytes: &[u8] = include_bytes!(env!("TEMPORAL_DESCRIPTOR_SET"));
        Self::from_pool(&DescriptorPool::decode(bytes)?)
    }

    pub fn from_pool(pool: &DescriptorPool) -> Result<Self, SchemaError> {
        if pool.get_message_by_name(PAYLOAD).is_none() {
            return Err(SchemaError::Missing(PAYLOAD));
        }
        let relevant = relevant_messages(pool);
        let mut names: Vec<&String> = relevant.iter().collect();
        names.sort();
        let by_name: HashMap<String, MsgId> = names
            .iter()
            .enumerate()
            .map(|(i, name)| ((*name).clone(), MsgId(i as u32)))
            .collect();
        let plans = names
            .iter()
            .map(|name| {
                pool.get_message_by_name(name)
                    .map(|message| plan(&message, &by_name))
                    .unwrap_or_default()
            })
            .collect();
        let mut schema = Schema {
            plans,
            by_name,
            methods: HashMap::new(),
            status: None,
        };
        schema.status = schema.node(RPC_STATUS);
        schema.methods = methods(pool, &schema);
        Ok(schema)
    }

    /// The node to walk for a message type, or `None` when it cannot hold a payload.
    pub fn node(&self, full_name: &str) -> Option<Node> {
        match full_name {
            PAYLOAD => Some(Node::Payload),
            ANY => Some(Node::Any),
            _ => self.by_name.get(full_name).copied().map(Node::Message),
        }
    }

    /// The method served at an HTTP/2 path such as `/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution`.
    pub fn method(&self, path: &str) -> Option<&Method> {
        self.methods.get(path)
    }

    pub fn methods(&self) -> impl Iterator<Item = (&str, &Method)> {
        self.methods.iter().map(|(path, method)| (path.as_str(), method))
    }

    /// `google.rpc.Status`, carried in the `grpc-status-details-bin` trailer.
    pub fn status(&self) -> Option<Node> {
        self.status
    }

    /// The node behind field `number` of message `id`.
    pub fn child(&self, id: MsgId, number: u32) -> Option<Node> {
        let plan = self.plans.get(id.0 as usize)?;
        plan.binary_search_by_key(&number, |(n, _)| *n)
            .ok()
            .map(|i| plan[i].1)
    }
}

/// Messages from which a payload is reachable, found by iterating to a fixpoint.
fn relevant_messages(pool: &DescriptorPool) -> HashSet<String> {
    let mut relevant = HashSet::new();
    loop {
        let before = relevant.len();
        for message in pool.all_messages() {
            let name = message.full_name();
            if [PAYLOAD, ANY, SEARCH_ATTRIBUTES].contains(&name) || relevant.contains(name) {
                continue;
            }
            if message.fields().any(|f| leads_to_payload(&f.kind(), &relevant)) {
                relevant.insert(name.to_owned());
            }
        }
        if relevant.len() == before {
            return relevant;
        }
    }
}

fn leads_to_payload(kind: &Kind, relevant: &HashSet<String>) -> bool {
    match kind {
        Kind::Message(m) => match m.full_name() {
            PAYLOAD | ANY => true,
            name => relevant.contains(name),
        },
        _ => false,
    }
}

fn plan(message: &MessageDescriptor, by_name: &HashMap<String, MsgId>) -> Vec<(u32, Node)> {
    let mut fields: Vec<(u32, Node)> = message
        .fields()
        .filter_map(|field| match field.kind() {
            Kind::Message(m) => match m.full_name() {
                PAYLOAD => Some(Node::Payload),
                ANY => Some(Node::Any),
                name => by_name.get(name).copied().map(Node::Message),
            }
            .map(|node| (field.number(), node)),
            _ => None,
        })
        .collect();
    fields.sort_by_key(|(n, _)| *n);
    fields
}

fn methods(pool: &DescriptorPool, schema: &Schema) -> HashMap<String, Method> {
    pool.services()
        .filter(|s| PROXIED_SERVICES.contains(&s.full_name()))
        .flat_map(|service| {
            let methods: Vec<_> = service.methods().collect();
            methods.into_iter().map(move |m| {
                let input = m.input();
                let namespace_field = input
                    .get_field_by_name("namespace")
                    .filter(|f| f.kind() == Kind::String)
                    .map(|f| f.number());
                let method = Method {
                    request: schema.node(input.full_name()),
                    response: schema.node(m.output().full_name()),
                    namespace_field,
                };
                (format!("/{}/{}", service.full_name(), m.name()), method)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::temporal().expect("the built-in descriptor set decodes")
    }

    #[test]
    fn every_workflow_service_method_is_known() {
        let s = schema();
        let count = s
            .methods()
            .filter(|(p, _)| p.contains("WorkflowService/"))
            .count();
        assert!(count > 100, "only {count} WorkflowService methods");
        let start = s
            .method("/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution")
            .unwrap();
        assert!(start.request.is_some());
        assert!(start.namespace_field.is_some());
    }

    #[test]
    fn search_attributes_are_skipped_but_memo_is_walked() {
        let s = schema();
        assert_eq!(s.node(SEARCH_ATTRIBUTES), None);
        let Some(Node::Message(memo)) = s.node("temporal.api.common.v1.Memo") else {
            panic!("Memo must be walked");
        };
        // Memo.fields is a map<string, Payload>: its entry type leads to a payload.
        assert!(matches!(s.child(memo, 1), Some(Node::Message(_))));
    }

    #[test]
    fn failures_and_status_details_are_walked() {
        let s = schema();
        assert!(s.node("temporal.api.failure.v1.Failure").is_some());
        assert!(
            s.node("temporal.api.errordetails.v1.QueryFailedFailure")
                .is_some()
        );
        assert!(
            s.node("temporal.api.errordetails.v1.MultiOperationExecutionFailure")
                .is_some()
        );
        assert_eq!(s.status(), s.node(RPC_STATUS));
        assert!(s.status().is_some());
    }

    #[test]
    fn messages_without_payloads_have_no_plan() {
        let s = schema();
        assert_eq!(s.node("temporal.api.common.v1.WorkflowExecution"), None);
        let describe = s
            .method("/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo")
            .unwrap();
        assert_eq!(describe.response, None);
    }
}
