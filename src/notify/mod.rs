//! Notifications: what a notification holds, how it is rendered for each channel type
//! (email, Slack, webhook in Lookout's or Alertmanager's format, SMS), Standard Webhooks
//! signing, and the retry schedule.

pub mod message;
pub mod outbox;
pub mod policy;
pub mod render;
pub mod retry;
pub mod signing;
