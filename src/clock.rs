//! The current time, injectable: `BLAT_NOW=<epoch seconds>` fixes it, so
//! tests of grace periods and aging do not wait for real days to pass.

/// Seconds since the epoch, or `$BLAT_NOW` when set.
pub fn now() -> i64 {
    if let Ok(fixed) = std::env::var("BLAT_NOW") {
        if let Ok(secs) = fixed.trim().parse() {
            return secs;
        }
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// RFC 3339 UTC form of an epoch time, for logs and reports.
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| secs.to_string())
}
