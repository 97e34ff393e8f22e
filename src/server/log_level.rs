//! The log filter, changed while the broker runs (`PUT /v1/log-level` on the admin listener):
//! `main` installs the filter in a reloadable layer and hands this module the way to replace it.

use std::sync::{Mutex, OnceLock};

/// Replaces the filter with the one `directives` (tracing's `EnvFilter` syntax) name.
type Reload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static RELOAD: OnceLock<Reload> = OnceLock::new();
static CURRENT: Mutex<String> = Mutex::new(String::new());

/// Called once by `main`: how to replace the filter, and the one in force.
pub fn install(current: &str, reload: Reload) {
    *CURRENT.lock().expect("not poisoned") = current.to_string();
    let _ = RELOAD.set(reload);
}

/// The filter in force (`RUST_LOG`'s syntax), if `main` installed one.
pub fn current() -> Option<String> {
    RELOAD.get()?;
    Some(CURRENT.lock().expect("not poisoned").clone())
}

/// Sets the filter to `directives` (e.g. `info,sluice::server::fetcher=debug`).
pub fn set(directives: &str) -> Result<(), String> {
    let reload = RELOAD
        .get()
        .ok_or("the log filter cannot be changed in this process")?;
    reload(directives)?;
    *CURRENT.lock().expect("not poisoned") = directives.to_string();
    tracing::warn!(filter = directives, "log filter changed");
    Ok(())
}
