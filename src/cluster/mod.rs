//! The Lease seam and the other cluster-wide facts: which replicas are alive, who holds
//! each leader lease, and which tokens are revoked.
//!
//! Embedded mode has one replica that holds every lease; cluster mode keeps all three in
//! Redis, with PostgreSQL as the truth where losing Redis must not lose anything
//! (fencing counters, revocations).

pub mod lease;
pub mod registry;
pub mod revocation;

pub use lease::{LeaseGuard, LeaseInfo, Leases, TryAcquire, run_under_lease};
pub use registry::{Registry, ReplicaInfo};
pub use revocation::Revocations;

/// Names of the leader leases, one per kind of singleton work.
pub mod lease_names {
    /// Polling of sources (KumoMTA, Prometheus targets, probes).
    pub const SOURCES: &str = "sources";
    /// Rule evaluation.
    pub const RULES: &str = "rules";
    /// Retention and clean-up.
    pub const MAINTENANCE: &str = "maintenance";
    /// Every lease `/api/v1/cluster` reports on.
    pub const ALL: &[&str] = &[SOURCES, RULES, MAINTENANCE];
}
