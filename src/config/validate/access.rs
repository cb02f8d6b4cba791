//! Access control: `[proxy] trusted_proxies` and each virtual host's `allow`, `deny`,
//! `rate_limit_rps` and `rate_limit_burst`, with the same rules as the API.

use super::super::problem::{KeyPath, Problems};
use super::super::schema::VirtualHostSection;
use vhost_actors::model::{parse_cidr, AccessSettings, IpNet};

/// The CIDRs of `[proxy] trusted_proxies`, each entry that does not parse a problem of its own.
pub(super) fn trusted_proxies(list: Option<&[String]>, errs: &mut Problems) -> Vec<IpNet> {
    let at = KeyPath::section("proxy").key("trusted_proxies");
    cidrs(list.unwrap_or_default(), &at, errs)
}

/// A virtual host's access control (its problems pushed under its keys).
pub(super) fn access(v: &VirtualHostSection, at: &KeyPath, errs: &mut Problems) -> AccessSettings {
    // A list with an entry that does not parse is left out of the checks of the whole (its
    // entries are the problem, not its length).
    let mut list = |key: &str, l: &Option<Vec<String>>| {
        let l = l.as_ref()?;
        let before = errs.len();
        let nets = cidrs(l, &at.key(key), errs);
        (errs.len() == before).then_some(nets)
    };
    let mut settings = AccessSettings {
        allow: list("allow", &v.allow),
        deny: list("deny", &v.deny),
        rate_limit_rps: v.rate_limit_rps,
        rate_limit_burst: v.rate_limit_burst,
    };
    settings.drop_empty_deny();
    if let Err(problems) = settings.check() {
        for p in problems {
            errs.push(at.key(p.key), p.message);
        }
    }
    settings
}

fn cidrs(list: &[String], at: &KeyPath, errs: &mut Problems) -> Vec<IpNet> {
    list.iter()
        .enumerate()
        .filter_map(|(i, text)| parse_cidr(text).map_err(|e| errs.push(at.index(i), e)).ok())
        .collect()
}
