//! Tests of the realtime part (see the issue for what they must show).
