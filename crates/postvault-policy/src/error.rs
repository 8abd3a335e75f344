//! Errors of loading a policy pack. A decision is never an error: see
//! [`crate::Decision`].

use std::fmt;

/// A pack that cannot be loaded: names the file, the line where known, and
/// the check that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackError {
    pub file: String,
    pub line: Option<usize>,
    /// The check that failed, e.g. `matrix-row` or `cedar-validation`.
    pub rule: String,
    pub message: String,
}

impl PackError {
    pub(crate) fn new(file: &str, line: Option<usize>, rule: &str, message: String) -> Self {
        PackError {
            file: file.to_string(),
            line,
            rule: rule.to_string(),
            message,
        }
    }
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: [{}] {}", self.file, self.rule, self.message),
            None => write!(f, "{}: [{}] {}", self.file, self.rule, self.message),
        }
    }
}

impl std::error::Error for PackError {}
