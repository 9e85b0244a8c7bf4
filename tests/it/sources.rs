//! Tests of the sources part (see the issue for what they must show).
