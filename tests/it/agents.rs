//! Tests of the agents part: the agent socket, the registry and presence across
//! replicas, configuration pushes, and the dashboard data.

mod client;
mod dashboard;
mod registry;
mod socket;
