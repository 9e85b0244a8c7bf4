//! SQL reporting queries (docs/sql-reporting.md), run on both backends.
