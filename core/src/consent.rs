//! Consent: a request that says "do not track" produces no event.

use crate::config::Consent;
use crate::extract::{cookie, header};
use alloc::string::String;

/// Why an exchange was left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentDenied {
    /// `Sec-GPC: 1` (Global Privacy Control).
    Gpc,
    /// The configured consent cookie holds a denying value.
    Cookie,
}

impl ConsentDenied {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gpc => "gpc",
            Self::Cookie => "consent_cookie",
        }
    }
}

/// Checks the request headers (lower-case names) against the consent settings.
pub fn check(consent: &Consent, request_headers: &[(String, String)]) -> Result<(), ConsentDenied> {
    if consent.honor_gpc && header(request_headers, "sec-gpc").is_some_and(|v| v.trim() == "1") {
        return Err(ConsentDenied::Gpc);
    }
    if let Some(c) = &consent.cookie
        && let Some(v) = cookie(request_headers, &c.name)
        && c.deny_values
            .iter()
            .any(|d| d.eq_ignore_ascii_case(v.trim()))
    {
        return Err(ConsentDenied::Cookie);
    }
    Ok(())
}
