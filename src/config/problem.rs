//! A problem found in a config file: the key it is about, as users read it, where it is in the
//! file, and what is wrong.

use std::fmt;
use std::path::Path;

/// A path to a key or table in the file, shown as `backends[0].tags`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Step>);

/// One step of a [`KeyPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A key of a table.
    Key(String),
    /// An element of an array (e.g. one `[[backends]]` table).
    Index(usize),
}

impl KeyPath {
    /// The path of a top-level key or section.
    pub fn section(name: &str) -> Self {
        Self(vec![Step::Key(name.to_string())])
    }

    /// This path, then `key`.
    pub fn key(&self, key: &str) -> Self {
        let mut steps = self.0.clone();
        steps.push(Step::Key(key.to_string()));
        Self(steps)
    }

    /// This path, then element `index`.
    pub fn index(&self, index: usize) -> Self {
        let mut steps = self.0.clone();
        steps.push(Step::Index(index));
        Self(steps)
    }

    /// The steps from the top of the file.
    pub fn steps(&self) -> &[Step] {
        &self.0
    }

    /// Whether `self` is `prefix` or lies under it.
    pub fn starts_with(&self, prefix: &KeyPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The table or array holding this key (the top of the file for a section).
    pub fn parent(&self) -> KeyPath {
        Self(self.0[..self.0.len().saturating_sub(1)].to_vec())
    }
}

impl From<Vec<Step>> for KeyPath {
    fn from(steps: Vec<Step>) -> Self {
        Self(steps)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(k) if i == 0 => f.write_str(k)?,
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A position in the file, both 1-based; the column counts characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    /// Line number.
    pub line: usize,
    /// Column number.
    pub column: usize,
}

impl Place {
    /// The place of byte `offset` of `text`.
    pub fn of_offset(text: &str, offset: usize) -> Self {
        // toml's spans fall on character boundaries; anything else counts as the end.
        let before = text.get(..offset).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Self {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// One problem: the key it is about, where, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where in the file's structure.
    pub key: KeyPath,
    /// Where in the file's text, when the file has that place (a missing section has none).
    pub place: Option<Place>,
    /// What is wrong, in plain words.
    pub message: String,
}

impl Problem {
    /// The line users see: `FILE:LINE:COLUMN: key: message` (`FILE: key: message` without a place).
    pub fn located(&self, file: &Path) -> String {
        match self.place {
            Some(Place { line, column }) => format!("{}:{line}:{column}: {self}", file.display()),
            None => format!("{}: {self}", file.display()),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.steps().is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// The problems found so far, in the order they were found.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    /// Records that `key` has a problem.
    pub(super) fn push(&mut self, key: KeyPath, message: impl fmt::Display) {
        self.0.push(Problem {
            key,
            place: None,
            message: message.to_string(),
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}
