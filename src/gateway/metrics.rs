//! The gateway's own metrics (served at `/metrics` with the rest).

/// Connections open on this replica, by tenant.
pub fn connection_opened(replica: &str, tenant: &str) {
    metrics::gauge!("lookout_ws_connections", "replica" => replica.to_string(), "tenant" => tenant.to_string())
        .increment(1.0);
}

pub fn connection_closed(replica: &str, tenant: &str) {
    metrics::gauge!("lookout_ws_connections", "replica" => replica.to_string(), "tenant" => tenant.to_string())
        .decrement(1.0);
}

/// Subscriptions (patterns) held by this replica's connections.
pub fn subscriptions(delta: f64) {
    metrics::gauge!("lookout_ws_subscriptions").increment(delta);
}

/// Event frames handed to connections' send queues.
pub fn fanned_out(count: u64) {
    metrics::counter!("lookout_ws_events_fanned_out_total").increment(count);
}

/// Frames not sent or not processed, by why (`slow_consumer`, `rate_limited`).
pub fn frame_dropped(reason: &'static str) {
    metrics::counter!("lookout_ws_frames_dropped_total", "reason" => reason).increment(1);
}

/// Connections closed by the server, by close code.
pub fn closed_with(code: u16) {
    metrics::counter!("lookout_ws_closes_total", "code" => code.to_string()).increment(1);
}

/// The longest send queue seen on this replica.
pub fn send_queue_high_water(len: usize) {
    metrics::gauge!("lookout_ws_send_queue_high_water").set(len as f64);
}

/// Gaps in a topic's offsets filled from the history.
pub fn gap_filled() {
    metrics::counter!("lookout_ws_gap_fills_total").increment(1);
}
