//! Temporal messages built from the API's own descriptors: any request or response of the
//! services the proxy serves, with payloads, `Any`s and maps at every depth. Also the oracle:
//! the payloads a protobuf decoder finds in the same message.

use bytes::Bytes;
use claimcheck::payload::schema::{Node, Schema, temporal_descriptors};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MapKey, MessageDescriptor, ReflectMessage, Value};

use super::rng::Rng;

const PAYLOAD: &str = "temporal.api.common.v1.Payload";
const ANY: &str = "google.protobuf.Any";
const MAX_DEPTH: usize = 7;

pub struct Temporal {
    pub pool: DescriptorPool,
    pub schema: Schema,
    /// Every proxied method's request and response type that can hold a payload.
    roots: Vec<(MessageDescriptor, Node)>,
    /// Types an `Any` may name that the proxy walks into.
    any_types: Vec<MessageDescriptor>,
}

impl Temporal {
    pub fn load() -> Self {
        let pool = temporal_descriptors().expect("descriptor set");
        let schema = Schema::from_pool(&pool).expect("schema");
        let mut roots = Vec::new();
        for service in pool.services() {
            for method in service.methods() {
                let path = format!("/{}/{}", service.full_name(), method.name());
                let Some(known) = schema.method(&path) else {
                    continue;
                };
                roots.extend(known.request.map(|node| (method.input(), node)));
                roots.extend(known.response.map(|node| (method.output(), node)));
            }
        }
        let any_types = pool
            .all_messages()
            .filter(|m| matches!(schema.node(m.full_name()), Some(Node::Message(_))))
            .collect();
        Temporal {
            pool,
            schema,
            roots,
            any_types,
        }
    }

    /// A random request or response, and the node the rewriter walks it from.
    pub fn message(&self, rng: &mut Rng) -> (MessageDescriptor, Node, DynamicMessage) {
        let (descriptor, node) = rng.pick(&self.roots).clone();
        let message = self.fill(rng, &descriptor, 0);
        (descriptor, node, message)
    }

    /// A valid serialized `Payload`: plain, or sometimes a reference.
    pub fn payload(&self, rng: &mut Rng) -> Vec<u8> {
        let descriptor = self.pool.get_message_by_name(PAYLOAD).expect("Payload");
        self.fill(rng, &descriptor, MAX_DEPTH).encode_to_vec()
    }

    fn fill(&self, rng: &mut Rng, descriptor: &MessageDescriptor, depth: usize) -> DynamicMessage {
        match descriptor.full_name() {
            PAYLOAD if rng.chance(0.3) => return reference(rng, descriptor),
            ANY => return self.any(rng, descriptor, depth),
            _ => {}
        }
        let mut message = DynamicMessage::new(descriptor.clone());
        for field in descriptor.fields() {
            if !rng.chance(self.weight(&field.kind(), depth)) {
                continue;
            }
            let value = if field.is_map() {
                let Kind::Message(entry) = field.kind() else {
                    continue;
                };
                let (key, value) = (entry.map_entry_key_field(), entry.map_entry_value_field());
                let entries = (0..rng.below(3))
                    .map(|_| (map_key(rng, &key.kind()), self.value(rng, &value.kind(), depth)))
                    .collect();
                Value::Map(entries)
            } else if field.is_list() {
                Value::List(
                    (0..rng.below(3))
                        .map(|_| self.value(rng, &field.kind(), depth))
                        .collect(),
                )
            } else {
                self.value(rng, &field.kind(), depth)
            };
            message.set_field(&field, value);
        }
        message
    }

    /// How likely a field is set: fields that lead to payloads far more than the rest.
    fn weight(&self, kind: &Kind, depth: usize) -> f64 {
        match kind {
            Kind::Message(m) if depth >= MAX_DEPTH => {
                if m.full_name() == PAYLOAD {
                    0.3
                } else {
                    0.0
                }
            }
            Kind::Message(m) if self.schema.node(m.full_name()).is_some() => 0.6,
            Kind::Message(_) => 0.1,
            _ => 0.3,
        }
    }

    fn value(&self, rng: &mut Rng, kind: &Kind, depth: usize) -> Value {
        match kind {
            Kind::Message(m) => Value::Message(self.fill(rng, m, depth + 1)),
            Kind::String => Value::String(rng.some_text()),
            Kind::Bytes => Value::Bytes(Bytes::from(rng.some_bytes())),
            Kind::Bool => Value::Bool(rng.chance(0.5)),
            Kind::Enum(e) => Value::EnumNumber(match rng.chance(0.9) {
                true => rng
                    .pick(&e.values().map(|v| v.number()).collect::<Vec<_>>())
                    .to_owned(),
                false => rng.next() as i32,
            }),
            Kind::Double => Value::F64(rng.next() as f64),
            Kind::Float => Value::F32(rng.next() as f32),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(rng.next() as i32),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(rng.next() as i64),
            Kind::Uint32 | Kind::Fixed32 => Value::U32(rng.next() as u32),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(rng.next()),
        }
    }

    /// An `Any` holding a payload-bearing message, or one the proxy cannot resolve.
    fn any(&self, rng: &mut Rng, descriptor: &MessageDescriptor, depth: usize) -> DynamicMessage {
        let mut any = DynamicMessage::new(descriptor.clone());
        let inner = rng.pick(&self.any_types).clone();
        let (url, value) = match rng.chance(0.8) && depth < MAX_DEPTH {
            true => (
                format!("type.googleapis.com/{}", inner.full_name()),
                self.fill(rng, &inner, depth + 1).encode_to_vec(),
            ),
            false => (rng.some_text(), rng.some_bytes()),
        };
        any.set_field_by_name("type_url", Value::String(url));
        any.set_field_by_name("value", Value::Bytes(Bytes::from(value)));
        any
    }

    /// The payloads a protobuf decoder finds where the proxy looks: every `Payload` reachable
    /// through the types that can hold one, into the `Any`s it can resolve, never into
    /// `SearchAttributes` (the server indexes those).
    pub fn payloads(&self, message: &DynamicMessage, out: &mut Vec<DynamicMessage>) {
        let name = message.descriptor().full_name().to_owned();
        if name == PAYLOAD {
            out.push(message.clone());
            return;
        }
        if self.schema.node(&name).is_none() {
            return;
        }
        if name == ANY {
            self.any_payloads(message, out);
            return;
        }
        for (_, value) in message.fields() {
            self.value_payloads(value, out);
        }
    }

    fn value_payloads(&self, value: &Value, out: &mut Vec<DynamicMessage>) {
        match value {
            Value::Message(m) => self.payloads(m, out),
            Value::List(items) => items.iter().for_each(|v| self.value_payloads(v, out)),
            Value::Map(entries) => entries.values().for_each(|v| self.value_payloads(v, out)),
            _ => {}
        }
    }

    fn any_payloads(&self, any: &DynamicMessage, out: &mut Vec<DynamicMessage>) {
        let url = any
            .get_field_by_name("type_url")
            .and_then(|v| v.as_str().map(str::to_owned));
        let name = url
            .as_deref()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let Some(Node::Message(_)) = self.schema.node(&name) else {
            return;
        };
        let Some(descriptor) = self.pool.get_message_by_name(&name) else {
            return;
        };
        let value = any.get_field_by_name("value");
        let bytes = value
            .as_deref()
            .and_then(Value::as_bytes)
            .cloned()
            .unwrap_or_default();
        if let Ok(inner) = DynamicMessage::decode(descriptor, bytes) {
            self.payloads(&inner, out);
        }
    }
}

fn map_key(rng: &mut Rng, kind: &Kind) -> MapKey {
    match kind {
        Kind::Bool => MapKey::Bool(rng.chance(0.5)),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(rng.next() as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(rng.next() as i64),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(rng.next() as u32),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(rng.next()),
        _ => MapKey::String(rng.some_text()),
    }
}

/// A Payload holding an External Storage reference, as an SDK or the proxy writes it.
fn reference(rng: &mut Rng, descriptor: &MessageDescriptor) -> DynamicMessage {
    let bytes = super::reference::generate(rng)
        .to_payload(rng.any_size())
        .expect("JSON");
    DynamicMessage::decode(descriptor.clone(), bytes.as_slice()).expect("a reference is a Payload")
}
