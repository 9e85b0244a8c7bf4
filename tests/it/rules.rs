//! Tests of the rules part (see the issue for what they must show).
