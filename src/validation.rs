//! Validation problems, shared by every part that checks user input (rules, channels,
//! sources, metrics) and answered by the HTTP edge as a 422 listing them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One validation problem, named by the JSON path of the offending field
/// (`condition.expr.ratio.numerator[0].window`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}
