//! Events on a policy, as `kubectl describe` shows them: the controller's Ready changes and
//! the webhook's injections alike.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};

use crate::policy::PayloadStoragePolicy;

/// The Events API caps a note at 1 KiB.
const MAX_NOTE_BYTES: usize = 1024;

pub async fn publish(
    recorder: &Recorder,
    policy: &PayloadStoragePolicy,
    (type_, reason, action): (EventType, &str, &str),
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, MAX_NOTE_BYTES).to_owned()),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &policy.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish an Event");
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        assert_eq!(super::truncate("ab€", 4), "ab");
        assert_eq!(super::truncate("ab", 4), "ab");
    }
}
