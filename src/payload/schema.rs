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
const WORKFLOW_EXECUTION: &str = "temporal.api.common.v1.WorkflowExecution";
const WORKFLOW_TYPE: &str = "temporal.api.common.v1.WorkflowType";
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
#[derive(Debug, Clone)]
pub struct Method {
    pub request: Option<Node>,
    pub response: Option<Node>,
    /// Number of the request's top-level `namespace` string field, if it has one.
    pub namespace_field: Option<u32>,
    /// Where the request names the workflow run its payloads belong to.
    pub run: RunFields,
    /// Where the response hands out tasks (a poll's own answer, or tasks handed out eagerly):
    /// the field holding each, or `None` for the answer itself.
    pub tasks: Vec<(Option<u32>, RunFields)>,
}

/// A field one or two levels deep: `workflow_id`, or `workflow_execution.workflow_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPath {
    pub outer: u32,
    pub inner: Option<u32>,
}

/// Where a message names a workflow run, by the field names every Temporal message uses
/// for them; any of them may be absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunFields {
    pub task_token: Option<u32>,
    pub workflow_id: Option<FieldPath>,
    pub run_id: Option<FieldPath>,
    pub workflow_type: Option<FieldPath>,
}

impl RunFields {
    /// A task handed to a worker: a token, and the run it belongs to.
    fn is_task(&self) -> bool {
        self.task_token.is_some() && self.workflow_id.is_some()
    }
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
        Self::from_pool(&temporal_descriptors()?)
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

/// The descriptors of the Temporal API version this binary was built with.
pub fn temporal_descriptors() -> Result<DescriptorPool, SchemaError> {
    let bytes: &[u8] = include_bytes!(env!("TEMPORAL_DESCRIPTOR_SET"));
    Ok(DescriptorPool::decode(bytes)?)
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
                    run: run_fields(&input),
                    tasks: tasks(&m.output()),
                };
                (format!("/{}/{}", service.full_name(), m.name()), method)
            })
        })
        .collect()
}

fn run_fields(message: &MessageDescriptor) -> RunFields {
    let execution = ["workflow_execution", "execution"]
        .iter()
        .find_map(|name| message_field(message, name, WORKFLOW_EXECUTION));
    let in_execution = |name: &str| {
        let (outer, execution) = execution.as_ref()?;
        let inner = scalar_field(execution, name, Kind::String)?;
        Some(FieldPath {
            outer: *outer,
            inner: Some(inner),
        })
    };
    let top =
        |name: &str| scalar_field(message, name, Kind::String).map(|outer| FieldPath { outer, inner: None });
    let workflow_type = message_field(message, "workflow_type", WORKFLOW_TYPE).and_then(|(outer, t)| {
        Some(FieldPath {
            outer,
            inner: Some(scalar_field(&t, "name", Kind::String)?),
        })
    });
    RunFields {
        task_token: scalar_field(message, "task_token", Kind::Bytes),
        workflow_id: top("workflow_id").or_else(|| in_execution("workflow_id")),
        run_id: top("run_id").or_else(|| in_execution("run_id")),
        workflow_type,
    }
}

/// The tasks a response hands out: itself, when it is one, and its fields that hold tasks.
fn tasks(response: &MessageDescriptor) -> Vec<(Option<u32>, RunFields)> {
    let own = Some(run_fields(response))
        .filter(RunFields::is_task)
        .map(|run| (None, run));
    let held = response.fields().filter_map(|field| match field.kind() {
        Kind::Message(m) => Some(run_fields(&m))
            .filter(RunFields::is_task)
            .map(|run| (Some(field.number()), run)),
        _ => None,
    });
    own.into_iter().chain(held).collect()
}

fn scalar_field(message: &MessageDescriptor, name: &str, kind: Kind) -> Option<u32> {
    message
        .get_field_by_name(name)
        .filter(|f| f.kind() == kind && !f.is_list())
        .map(|f| f.number())
}

fn message_field(
    message: &MessageDescriptor,
    name: &str,
    full_name: &str,
) -> Option<(u32, MessageDescriptor)> {
    let field = message.get_field_by_name(name).filter(|f| !f.is_list())?;
    match field.kind() {
        Kind::Message(m) if m.full_name() == full_name => Some((field.number(), m)),
        _ => None,
    }
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
