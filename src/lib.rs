//! Lookout: a real-time monitoring and alerting hub.
//!
//! The folders follow the parts of `architecture.md`: `api` (HTTP edge), `auth`,
//! `store` / `bus` / `cluster` (the three seams, one implementation per mode), `series`
//! (the sample model), `sources`, `rules`, `notify`, and the app wiring in `app`.

pub mod api;
pub mod app;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod ingest;
pub mod maintenance;
pub mod notify;
pub mod rules;
pub mod series;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod validation;
pub mod web;
