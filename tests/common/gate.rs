//! Tests that need more than the toolchain (a PostgreSQL server, root to
//! mount a small disk, later Redis) run when they can, and otherwise say
//! that they were skipped and why. With `HUDDLE_TEST_REQUIRE=1` (`.ci/run`
//! sets it) a skip is a failure instead, so CI never skips silently.

use std::io::Write;

/// Set to `1` to turn every skip into a failure.
pub const REQUIRE: &str = "HUDDLE_TEST_REQUIRE";

/// Whether skips are failures.
pub fn required() -> bool {
    std::env::var(REQUIRE).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Skips the calling test (the caller then returns), or fails it when
/// skips are not allowed. `why` says what is missing, `how` what would
/// make the test run.
pub fn skip(why: &str, how: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    if required() {
        panic!("{test} cannot run: {why}. {REQUIRE} is set, so it may not be skipped ({how})");
    }
    // Straight to the process's stderr: the test harness captures
    // `eprintln!` and shows it only for failing tests, and a skip must be
    // seen in a passing run.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}; {how}");
}

/// A server some tests need, found through an environment variable.
pub struct Service {
    /// As shown to people: "PostgreSQL".
    pub name: &'static str,
    /// The variable that holds its URL (`skip` skips deliberately).
    pub var: &'static str,
    /// Where it is looked for when the variable is unset.
    pub default_url: &'static str,
}

impl Service {
    /// The service's URL and what `connect` made of it; `None` (after
    /// [`skip`]) when it cannot be reached.
    pub fn reach<T>(&self, connect: impl FnOnce(&str) -> Result<T, String>) -> Option<(String, T)> {
        let url = std::env::var(self.var).unwrap_or_else(|_| self.default_url.to_owned());
        let how = format!("start one, or set {}=<url> (or {}=skip)", self.var, self.var);
        if url == "skip" {
            skip(&format!("{}=skip", self.var), &how);
            return None;
        }
        match connect(&url) {
            Ok(connected) => Some((url, connected)),
            Err(e) => {
                let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
                skip(&format!("no {} at {} ({e})", self.name, without_password(&url)), &how);
                None
            }
        }
    }
}

/// `scheme://user:secret@host/...` as `scheme://user:***@host/...`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    match rest.split_once('@') {
        Some((auth, host)) if auth.contains(':') => {
            let user = auth.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}
