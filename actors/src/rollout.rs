//! Rollouts: a domain's traffic split between tags, the rule that rolls a failing canary back,
//! and the history of routing changes that `undo` walks back. Plain values and functions; the
//! registry applies them and the request path reads the published split.

use crate::model::names::Tag;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many changes a domain's history keeps (oldest dropped first).
pub const HISTORY_LIMIT: usize = 100;

/// Largest weight a tag may get.
pub const MAX_WEIGHT: u32 = 10_000;

// === RollbackPolicy ===

/// When a canary is rolled back: its error share over `window_secs`, once it had
/// `min_requests` requests in that window.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackPolicy {
    /// Share of failed answers (5xx) and failed upstream attempts, 0..=1, above which the
    /// canary is rolled back.
    #[schema(minimum = 0, maximum = 1, example = 0.05)]
    pub max_error_rate: f64,
    /// Requests the canary must have had in the window before the rule applies.
    #[serde(default = "default_min_requests")]
    #[schema(minimum = 1, example = 100)]
    pub min_requests: u64,
    /// The window, in seconds.
    #[serde(default = "default_window_secs")]
    #[schema(minimum = 1, maximum = 300, example = 60)]
    pub window_secs: u64,
}

fn default_min_requests() -> u64 {
    100
}

fn default_window_secs() -> u64 {
    60
}

impl PartialEq for RollbackPolicy {
    fn eq(&self, o: &Self) -> bool {
        self.max_error_rate.to_bits() == o.max_error_rate.to_bits()
            && self.min_requests == o.min_requests
            && self.window_secs == o.window_secs
    }
}

impl Eq for RollbackPolicy {}

/// The longest window the outcome counters can hold.
pub const MAX_WINDOW_SECS: u64 = 300;

impl RollbackPolicy {
    /// Checks the values.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.max_error_rate) || self.max_error_rate.is_nan() {
            return Err(format!(
                "rollback.max_error_rate must be between 0 and 1, not {}",
                self.max_error_rate
            ));
        }
        if self.min_requests == 0 {
            return Err("rollback.min_requests must be > 0".into());
        }
        if !(1..=MAX_WINDOW_SECS).contains(&self.window_secs) {
            return Err(format!(
                "rollback.window_secs must be between 1 and {MAX_WINDOW_SECS}, not {}",
                self.window_secs
            ));
        }
        Ok(())
    }

    /// Whether `errors` of `requests` in the window call for a rollback.
    pub fn trips(&self, requests: u64, errors: u64) -> bool {
        requests >= self.min_requests && errors as f64 > self.max_error_rate * requests as f64
    }
}

// === Split ===

/// Weights per tag; at least one above zero.
pub type Weights = BTreeMap<Tag, u32>;

/// The tag that gets everything when a split ends: the largest weight, ties going to `current`
/// (the domain's enabled tag), then to the first in name order.
pub fn baseline(weights: &Weights, current: &Tag) -> Tag {
    let max = weights.values().copied().max().unwrap_or(0);
    if weights.get(current) == Some(&max) {
        return current.clone();
    }
    weights
        .iter()
        .find(|(_, w)| **w == max)
        .map(|(t, _)| t.clone())
        .unwrap_or_else(|| current.clone())
}

/// Checks weights: known shape, at least one above zero, none over [`MAX_WEIGHT`].
pub fn check_weights(weights: &Weights) -> Result<(), String> {
    if weights.is_empty() {
        return Err("weights must name at least one tag".into());
    }
    if let Some((t, w)) = weights.iter().find(|(_, w)| **w > MAX_WEIGHT) {
        return Err(format!(
            "weight {w} of tag '{t}' is over the maximum of {MAX_WEIGHT}"
        ));
    }
    if weights.values().all(|w| *w == 0) {
        return Err("at least one weight must be above 0".into());
    }
    Ok(())
}

// === Change ===

/// What kind of routing change a history entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// All traffic moved to one tag.
    Switch,
    /// Traffic split between tags.
    Split,
    /// A failing canary rolled back automatically.
    Rollback,
    /// The previous routing restored.
    Undo,
}

/// Who made a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangedBy {
    /// An API call.
    Api,
    /// The rollback rule.
    Rollback,
}

/// A domain's routing: one tag, or a split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Routing {
    /// The enabled tag (the baseline of a split).
    pub tag: Tag,
    /// The split, or null for all traffic to `tag`.
    #[schema(required = true, value_type = Option<BTreeMap<Tag, u32>>)]
    pub weights: Option<Weights>,
}

/// One entry of a domain's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// RFC 3339 time.
    #[schema(format = DateTime)]
    pub at: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The routing before.
    pub from: Routing,
    /// The routing after.
    pub to: Routing,
    /// Who did it.
    pub by: ChangedBy,
    /// Why, for rollbacks.
    #[schema(required = true)]
    pub reason: Option<String>,
}

/// The last automatic rollback of a domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LastRollback {
    /// RFC 3339 time.
    #[schema(format = DateTime)]
    pub at: String,
    /// The canary that failed.
    pub from_tag: Tag,
    /// The baseline that took all traffic.
    pub to_tag: Tag,
    /// The measured error share and the rule.
    pub reason: String,
}

/// RFC 3339 text of a Unix time in milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(pairs: &[(&str, u32)]) -> Weights {
        pairs
            .iter()
            .map(|(t, w)| (Tag::parse(t).unwrap(), *w))
            .collect()
    }

    #[test]
    fn the_baseline_is_the_heaviest_tag_and_ties_keep_the_current_one() {
        let a = Tag::parse("a").unwrap();
        let b = Tag::parse("b").unwrap();
        assert_eq!(baseline(&w(&[("a", 90), ("b", 10)]), &b), a);
        assert_eq!(baseline(&w(&[("a", 50), ("b", 50)]), &b), b);
        assert_eq!(baseline(&w(&[("a", 50), ("b", 50)]), &a), a);
    }

    #[test]
    fn weights_and_policies_are_checked() {
        assert!(check_weights(&w(&[("a", 0), ("b", 0)])).is_err());
        assert!(check_weights(&w(&[])).is_err());
        assert!(check_weights(&w(&[("a", MAX_WEIGHT + 1)])).is_err());
        assert!(check_weights(&w(&[("a", 95), ("b", 5)])).is_ok());
        let p = |r: f64, m: u64, s: u64| RollbackPolicy {
            max_error_rate: r,
            min_requests: m,
            window_secs: s,
        };
        assert!(p(0.05, 100, 60).check().is_ok());
        assert!(p(1.5, 100, 60).check().is_err());
        assert!(p(f64::NAN, 100, 60).check().is_err());
        assert!(p(0.05, 0, 60).check().is_err());
        assert!(p(0.05, 10, 0).check().is_err());
        assert!(p(0.05, 10, MAX_WINDOW_SECS + 1).check().is_err());
        assert!(!p(0.05, 100, 60).trips(99, 99), "too few requests");
        assert!(
            !p(0.05, 100, 60).trips(100, 5),
            "at the limit is not past it"
        );
        assert!(p(0.05, 100, 60).trips(100, 6));
    }
}
