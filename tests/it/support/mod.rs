//! Real stand-ins for the outside world: a private Redis server that a test may stop and
//! restart.

pub mod kumod;
pub mod redis_server;
pub mod smtp_sink;
