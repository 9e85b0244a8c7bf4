//! Tests of the metrics part (see the issue for what they must show).
