//! Integration tests: one binary (one link) for all of them.

mod common;
mod support;

mod api_edge;
mod auth_keys;
mod bus_conformance;
mod cluster;
mod lease_conformance;
mod sample_store;

// One module per part, owned by that part.
mod agents;
mod metrics;
mod notify;
mod realtime;
mod rules;
mod sources;
