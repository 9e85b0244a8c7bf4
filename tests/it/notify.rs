//! Tests of the notify part (see the issue for what they must show).
