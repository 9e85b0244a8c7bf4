//! Tests of the agents part (see the issue for what they must show).
