//! Tests of the rules part: rules over REST, the engine (driven with time as an input
//! through `Engine::tick`), failover, people's actions, silences and maintenance
//! windows, and the SQL reporting queries.

mod api;
mod engine;
mod reporting;
mod support;
