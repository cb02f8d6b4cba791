//! The open-files limit: every client and upstream connection is a file descriptor, and the
//! usual soft limit of 1024 is reached by a thousand idle clients, after which accept fails and
//! the proxy and the admin API stall. The soft limit is raised to the hard one at start.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; a failure is logged, not fatal.
pub fn raise() {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!("cannot read the open-files limit: {e}");
            return;
        }
    };
    if soft >= hard {
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => tracing::debug!(from = soft, to = hard, "open-files limit raised"),
        Err(e) => tracing::warn!(
            soft,
            hard,
            "cannot raise the open-files limit: {e}; about {soft} connections at most"
        ),
    }
}
