//! Lookout: a real-time monitoring and alerting hub.
//!
//! The folders follow the parts of `architecture.md`: `api` (HTTP edge), `auth`,
//! `store` / `bus` / `cluster` (the three seams, one implementation per mode), `series`
//! (the sample model), `ingest` / `query` / `agents` (metrics in and out), `sources`, `rules`, `notify`,
//! `gateway` (the `/ws` real-time side), `dashboard`, `web`, and the app wiring in `app`.

pub mod agents;
pub mod api;
pub mod app;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod gateway;
pub mod ingest;
pub mod maintenance;
pub mod notify;
pub mod query;
pub mod rules;
pub mod series;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod validation;
pub mod web;
