//! A domain's access control as the registry keeps it: CIDR allow and deny lists and a rate
//! limit per client IP. The same checks serve the config file and the API.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Most entries one allow or deny list may hold.
pub const MAX_ACCESS_ENTRIES: usize = 1024;

/// Highest `rate_limit_rps` and `rate_limit_burst`.
pub const MAX_RATE: u32 = 1_000_000;

/// A domain's access control; every field optional, none set means no control at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessSettings {
    /// CIDRs whose clients may use the domain; a client outside them gets `403`.
    #[serde(default)]
    #[schema(required = true, value_type = Option<Vec<String>>, example = json!(["10.0.0.0/8"]))]
    pub allow: Option<Vec<IpNet>>,
    /// CIDRs whose clients get `403` (deny wins over allow).
    #[serde(default)]
    #[schema(required = true, value_type = Option<Vec<String>>, example = json!(["10.0.0.66/32"]))]
    pub deny: Option<Vec<IpNet>>,
    /// Requests per second each client IP may send; above: `429` with `Retry-After`.
    #[serde(default)]
    #[schema(required = true, minimum = 1, maximum = 1000000)]
    pub rate_limit_rps: Option<u32>,
    /// Requests a client IP may send at once before the rate applies; defaults to
    /// `rate_limit_rps`.
    #[serde(default)]
    #[schema(required = true, minimum = 1, maximum = 1000000)]
    pub rate_limit_burst: Option<u32>,
}

impl AccessSettings {
    /// Whether any control is set.
    pub fn is_empty(&self) -> bool {
        self.allow.is_none()
            && self.deny.is_none()
            && self.rate_limit_rps.is_none()
            && self.rate_limit_burst.is_none()
    }

    /// The rate limit as (requests per second, burst), when there is one.
    pub fn rate_limit(&self) -> Option<(u32, u32)> {
        let rps = self.rate_limit_rps?;
        Some((rps, self.rate_limit_burst.unwrap_or(rps)))
    }

    /// The settings a request body asks for (raw lists parsed here), checked.
    pub fn from_input(
        allow: Option<Vec<String>>,
        deny: Option<Vec<String>>,
        rate_limit_rps: Option<u32>,
        rate_limit_burst: Option<u32>,
    ) -> Result<Self, Vec<String>> {
        Self::default().patched(AccessPatch {
            allow: Some(allow),
            deny: Some(deny),
            rate_limit_rps: Some(rate_limit_rps),
            rate_limit_burst: Some(rate_limit_burst),
        })
    }

    /// These settings with `patch` applied (a field left out keeps its value, `null` removes
    /// it; removing the rate removes its burst too), checked.
    pub fn patched(&self, patch: AccessPatch) -> Result<Self, Vec<String>> {
        let mut next = self.clone();
        let mut problems = Vec::new();
        let mut list =
            |name: &str, given: Option<Option<Vec<String>>>, into: &mut Option<Vec<IpNet>>| {
                match given {
                    None => {}
                    Some(None) => *into = None,
                    Some(Some(texts)) => match parse_cidrs(name, &texts) {
                        Ok(nets) => *into = Some(nets),
                        Err(e) => problems.extend(e),
                    },
                }
            };
        list("allow", patch.allow, &mut next.allow);
        list("deny", patch.deny, &mut next.deny);
        next.drop_empty_deny();
        if let Some(rps) = patch.rate_limit_rps {
            next.rate_limit_rps = rps;
            if rps.is_none() && patch.rate_limit_burst.is_none() {
                next.rate_limit_burst = None;
            }
        }
        if let Some(burst) = patch.rate_limit_burst {
            next.rate_limit_burst = burst;
        }
        if let Err(e) = next.check() {
            problems.extend(e.iter().map(ToString::to_string));
        }
        if problems.is_empty() {
            Ok(next)
        } else {
            Err(problems)
        }
    }

    /// An empty deny list denies nothing: it is no list.
    pub fn drop_empty_deny(&mut self) {
        if self.deny.as_ref().is_some_and(Vec::is_empty) {
            self.deny = None;
        }
    }

    /// Checks the settings as a whole: every problem, with the field it is about.
    pub fn check(&self) -> Result<(), Vec<AccessProblem>> {
        let mut problems = Vec::new();
        let mut push = |key, message| problems.push(AccessProblem { key, message });
        for (name, list) in [("allow", &self.allow), ("deny", &self.deny)] {
            if let Some(list) = list {
                if list.len() > MAX_ACCESS_ENTRIES {
                    push(
                        name,
                        format!(
                            "{name} lists {} entries; at most {MAX_ACCESS_ENTRIES} are allowed",
                            list.len()
                        ),
                    );
                }
            }
        }
        if self.allow.as_ref().is_some_and(Vec::is_empty) {
            push(
                "allow",
                "allow lists no address, which would refuse every client; null removes the list"
                    .into(),
            );
        }
        for (name, value) in [
            ("rate_limit_rps", self.rate_limit_rps),
            ("rate_limit_burst", self.rate_limit_burst),
        ] {
            if let Some(v) = value {
                if !(1..=MAX_RATE).contains(&v) {
                    push(name, format!("{name} {v} is out of range 1..={MAX_RATE}"));
                }
            }
        }
        if self.rate_limit_burst.is_some() && self.rate_limit_rps.is_none() {
            push(
                "rate_limit_burst",
                "rate_limit_burst needs rate_limit_rps".into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// A problem of [`AccessSettings`] as a whole, with the field it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessProblem {
    /// The field (`allow`, `deny`, `rate_limit_rps`, `rate_limit_burst`).
    pub key: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for AccessProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A change of [`AccessSettings`]: `None` keeps a field, `Some(None)` removes it.
#[derive(Clone, Debug, Default)]
pub struct AccessPatch {
    /// Allowed CIDRs as text.
    pub allow: Option<Option<Vec<String>>>,
    /// Denied CIDRs as text.
    pub deny: Option<Option<Vec<String>>>,
    /// Requests per second per client IP.
    pub rate_limit_rps: Option<Option<u32>>,
    /// Burst per client IP.
    pub rate_limit_burst: Option<Option<u32>>,
}

/// Parses one CIDR (`10.0.0.0/8`, `2001:db8::/32`) or one address, which stands for itself
/// (`/32` or `/128`).
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    match text.parse::<IpAddr>() {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => Err(format!(
            "'{text}' is not a CIDR (such as 10.0.0.0/8 or 2001:db8::/32) or an IP address"
        )),
    }
}

/// Parses a list of CIDRs, naming every entry that does not parse.
pub fn parse_cidrs(name: &str, list: &[String]) -> Result<Vec<IpNet>, Vec<String>> {
    let mut nets = Vec::with_capacity(list.len());
    let mut problems = Vec::new();
    for (i, text) in list.iter().enumerate() {
        match parse_cidr(text) {
            Ok(net) => nets.push(net),
            Err(e) => problems.push(format!("{name}[{i}]: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(nets)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_bare_addresses_parse() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_cidr(" 10.0.0.66 ").unwrap().to_string(),
            "10.0.0.66/32"
        );
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_cidr("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0/8", "1.2.3.4/x"] {
            assert!(parse_cidr(bad).is_err(), "{bad} accepted");
        }
        let e = parse_cidrs("allow", &["10.0.0.0/8".into(), "x".into(), "y/1".into()]);
        assert_eq!(e.unwrap_err().len(), 2);
    }

    #[test]
    fn settings_are_checked_together() {
        let ok = AccessSettings {
            allow: Some(vec![parse_cidr("10.0.0.0/8").unwrap()]),
            rate_limit_rps: Some(100),
            ..Default::default()
        };
        assert!(ok.check().is_ok());
        assert_eq!(ok.rate_limit(), Some((100, 100)));
        let bad = AccessSettings {
            allow: Some(vec![]),
            rate_limit_rps: None,
            rate_limit_burst: Some(0),
            ..Default::default()
        };
        let problems = bad.check().unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(AccessSettings::default().is_empty());
    }

    #[test]
    fn patches_keep_replace_and_remove() {
        let s = AccessSettings::from_input(
            Some(vec!["10.0.0.0/8".into()]),
            Some(vec![]),
            Some(10),
            Some(20),
        )
        .unwrap();
        assert_eq!(s.deny, None, "an empty deny list is no list");
        let kept = s.patched(AccessPatch::default()).unwrap();
        assert_eq!(kept, s);
        let no_rate = s
            .patched(AccessPatch {
                rate_limit_rps: Some(None),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            (no_rate.rate_limit_rps, no_rate.rate_limit_burst),
            (None, None)
        );
        assert!(no_rate.allow.is_some());
        let e = s
            .patched(AccessPatch {
                allow: Some(Some(vec!["nope".into()])),
                rate_limit_burst: Some(Some(0)),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("allow[0]"), "{e:?}");
    }
}
