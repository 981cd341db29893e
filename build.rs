//! Exposes the Temporal API descriptor set compiled by `temporalio-protos` so the rewriter
//! can derive, at start-up, which fields can carry payloads (design §4): a new API field is
//! covered by upgrading that crate, with no hand-written list to keep in step.
fn main() {
    let path = std::env::var("DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH")
        .expect("temporalio-protos exports its descriptor set path through `links`");
    println!("cargo:rustc-env=TEMPORAL_DESCRIPTOR_SET={path}");
    println!("cargo:rerun-if-env-changed=DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH");
}
