//! Errors as one line of log text. Depends on nothing else in the crate, so every layer may
//! use it.

/// `error: cause: cause`, every source in order.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
