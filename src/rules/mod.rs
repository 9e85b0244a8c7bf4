//! Alert rules: the rule model and its validation, a pure evaluator (windows of samples
//! → a value per alert instance), the per-instance state machine (inactive → pending →
//! firing → resolved), and annotation templates.

pub mod evaluator;
pub mod gate;
pub mod model;
pub mod state;
pub mod template;
