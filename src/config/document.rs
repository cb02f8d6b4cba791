//! The file as toml parsed it, every key and value with its byte span. Serde stops at the first
//! unknown key or wrong type, so [`Document::read`] takes each refused entry out and tries again,
//! then validates what fitted: one run reports every problem, each at its line and column.

use super::problem::{KeyPath, Place, Problem, Step};
use serde::de::DeserializeOwned;
use std::ops::Range;
use toml::de::{DeArray, DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// A parsed config file.
pub(super) struct Document<'i> {
    text: &'i str,
    root: Spanned<DeValue<'i>>,
}

/// An entry a deserialization error points at.
struct Found {
    /// The entry, in the document the error came from.
    path: KeyPath,
    /// Whether the error is about its key (unknown) rather than its value.
    on_key: bool,
}

impl<'i> Document<'i> {
    /// Parses TOML; a syntax error is reported alone, since what follows it cannot be trusted.
    pub(super) fn parse(text: &'i str) -> Result<Self, Problem> {
        match DeTable::parse(text) {
            Ok(root) => Ok(Self {
                text,
                root: Spanned::new(root.span(), DeValue::Table(root.into_inner())),
            }),
            Err(e) => Err(Problem {
                key: KeyPath::default(),
                place: e.span().map(|s| Place::of_offset(text, s.start)),
                message: e.message().to_string(),
            }),
        }
    }

    /// Deserializes the schema `T` from every entry that fits it and hands it to `validate`.
    /// The error lists the entries left out, then the problems `validate` found, each in file
    /// order, without those under a left-out entry (they are about the default that replaced it).
    pub(super) fn read<T: DeserializeOwned, C>(
        &self,
        validate: impl FnOnce(T) -> Result<C, Vec<Problem>>,
    ) -> Result<C, Vec<Problem>> {
        let mut kept = self.root.clone();
        let mut problems = Vec::new();
        let mut left_out = Vec::new();
        // Every round takes one entry out, so this ends.
        let schema = loop {
            let err = match T::deserialize(ValueDeserializer::from(kept.clone())) {
                Ok(schema) => break Some(schema),
                Err(err) => err,
            };
            let place = err.span().map(|s| Place::of_offset(self.text, s.start));
            let message = in_plain_words(err.message());
            let Some(found) = err.span().and_then(|s| innermost(&kept, &s)) else {
                problems.push(Problem {
                    key: KeyPath::default(),
                    place,
                    message,
                });
                break None;
            };
            let original = self.original_path(&kept, &found.path);
            let key = if found.on_key {
                original.parent()
            } else {
                original.clone()
            };
            // A required key of the wrong type was taken out in an earlier round: its table
            // is now "missing" it, which the type error already said.
            let ours = missing_field(&message).is_some_and(|k| left_out.contains(&key.key(k)));
            if !ours {
                problems.push(Problem {
                    key,
                    place,
                    message,
                });
            }
            remove(&mut kept, found.path.steps());
            left_out.push(original);
        };
        problems.sort_by_key(|p| p.place);
        // What was left is validated too, and its problems listed after those of keys and
        // types: a misspelt key explains the value problems that follow from its default.
        let mut invalid = Vec::new();
        let config = match schema.map(validate) {
            Some(Ok(config)) => Some(config),
            Some(Err(found)) => {
                for p in found {
                    let key = self.original_path(&kept, &p.key);
                    if !left_out.iter().any(|l| key.starts_with(l)) {
                        invalid.push(Problem {
                            place: self.place_of(&key),
                            key,
                            message: p.message,
                        });
                    }
                }
                None
            }
            None => None,
        };
        invalid.sort_by_key(|p| p.place);
        problems.append(&mut invalid);
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(problems),
        }
    }

    /// Where `key` is written: its value, or the nearest enclosing table that is written.
    fn place_of(&self, key: &KeyPath) -> Option<Place> {
        let mut node = &self.root;
        let mut span = None;
        for step in key.steps() {
            let Some(next) = child(node, step) else { break };
            node = next;
            span = Some(node.span());
        }
        span.map(|s| Place::of_offset(self.text, s.start))
    }

    /// `path` in `kept` (which lacks entries taken out) as it is in the file: an array element
    /// is the one with the same span.
    fn original_path(&self, kept: &Spanned<DeValue<'i>>, path: &KeyPath) -> KeyPath {
        let mut steps = Vec::new();
        let (mut original, mut kept) = (Some(&self.root), Some(kept));
        for step in path.steps() {
            let next_kept = kept.and_then(|k| child(k, step));
            let step = match (step, original, next_kept) {
                (Step::Index(i), Some(o), Some(k)) => match o.get_ref() {
                    DeValue::Array(a) => a
                        .iter()
                        .position(|e| e.span() == k.span())
                        .map_or(Step::Index(*i), Step::Index),
                    _ => Step::Index(*i),
                },
                (step, ..) => step.clone(),
            };
            original = original.and_then(|o| child(o, &step));
            kept = next_kept;
            steps.push(step);
        }
        KeyPath::from(steps)
    }
}

/// The entry of `node` one `step` down.
fn child<'a, 'i>(node: &'a Spanned<DeValue<'i>>, step: &Step) -> Option<&'a Spanned<DeValue<'i>>> {
    match (node.get_ref(), step) {
        (DeValue::Table(t), Step::Key(k)) => t.get(k.as_str()),
        (DeValue::Array(a), Step::Index(i)) => a.get(*i),
        _ => None,
    }
}

/// The deepest entry whose key or value holds `span`. A table's own span is only its header,
/// so every entry is looked at, not only those inside a matching parent.
fn innermost(root: &Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<Found> {
    fn holds(outer: &Range<usize>, inner: &Range<usize>) -> bool {
        outer.start <= inner.start && inner.end <= outer.end
    }
    fn consider(best: &mut Option<Found>, path: KeyPath, on_key: bool) {
        let deeper = best
            .as_ref()
            .is_none_or(|b| path.steps().len() > b.path.steps().len());
        if deeper {
            *best = Some(Found { path, on_key });
        }
    }
    fn walk(
        node: &Spanned<DeValue<'_>>,
        path: &KeyPath,
        span: &Range<usize>,
        best: &mut Option<Found>,
    ) {
        match node.get_ref() {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    let at = path.key(k.get_ref());
                    if holds(&k.span(), span) {
                        consider(best, at.clone(), true);
                    } else if holds(&v.span(), span) {
                        consider(best, at.clone(), false);
                    }
                    walk(v, &at, span, best);
                }
            }
            DeValue::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    let at = path.index(i);
                    if holds(&v.span(), span) {
                        consider(best, at.clone(), false);
                    }
                    walk(v, &at, span, best);
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    walk(root, &KeyPath::default(), span, &mut best);
    best
}

/// Takes the entry at `steps` out of `node`.
fn remove(node: &mut Spanned<DeValue<'_>>, steps: &[Step]) {
    let Some((last, parents)) = steps.split_last() else {
        return;
    };
    let mut node = node;
    for step in parents {
        let next = match (node.get_mut(), step) {
            (DeValue::Table(t), Step::Key(k)) => t.get_mut(k.as_str()),
            (DeValue::Array(a), Step::Index(i)) => a.get_mut(*i),
            _ => None,
        };
        let Some(next) = next else { return };
        node = next;
    }
    match (node.get_mut(), last) {
        (DeValue::Table(t), Step::Key(k)) => {
            t.remove(k.as_str());
        }
        (DeValue::Array(a), Step::Index(i)) => {
            let rest: DeArray<'_> = a
                .iter()
                .enumerate()
                .filter(|(j, _)| j != i)
                .map(|(_, v)| v.clone())
                .collect();
            *a = rest;
        }
        _ => {}
    }
}

/// The key serde's "missing field `x`" names.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// Serde's wording with Rust's type names replaced by TOML's.
fn in_plain_words(message: &str) -> String {
    let mut out = message.replace("unknown variant", "unknown value");
    for (rust, toml) in [
        ("expected usize", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number up to 4294967295"),
        ("expected u16", "expected a whole number up to 65535"),
        ("expected u8", "expected a whole number up to 255"),
        ("expected a sequence", "expected an array"),
        ("expected a boolean", "expected true or false"),
    ] {
        out = out.replace(rust, toml);
    }
    // `expected struct ProxySection`: the name is ours, the user wrote a table.
    if let Some(at) = out.find("expected struct ") {
        let end = out[at..].find(',').map_or(out.len(), |e| at + e);
        out.replace_range(at..end, "expected a table");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_type_names_become_toml_words() {
        assert_eq!(
            in_plain_words("invalid type: string \"two\", expected usize"),
            "invalid type: string \"two\", expected a whole number"
        );
        assert_eq!(
            in_plain_words("invalid type: integer `5`, expected struct ProxySection"),
            "invalid type: integer `5`, expected a table"
        );
        assert_eq!(
            in_plain_words("unknown variant `xml`, expected `text` or `json`"),
            "unknown value `xml`, expected `text` or `json`"
        );
    }

    #[test]
    fn places_count_lines_and_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(Place::of_offset(text, 0), Place { line: 1, column: 1 });
        let x = text.find("\"x\"").unwrap();
        assert_eq!(Place::of_offset(text, x), Place { line: 2, column: 6 });
    }
}
