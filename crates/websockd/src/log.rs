//! websocketd's log: one line per event on stderr,
//! `<time> | <LEVEL> | <category> | <context> | <message>`, filtered by `--loglevel`
//! (debug, trace, access, info, error, fatal; access, one line per request and session,
//! is the default). weft's own `tracing` events are shown at `--loglevel=debug`.

use crate::cli::Level;
use std::fmt;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static MIN: OnceLock<Level> = OnceLock::new();

/// Sets the least level shown (once, at start-up).
pub fn init(min: Level) {
    let _ = MIN.set(min);
    let filter = if min == Level::Debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(filter)
        .with_target(false)
        .try_init();
}

/// Whether `level` is shown.
pub fn enabled(level: Level) -> bool {
    level >= *MIN.get().unwrap_or(&Level::Access)
}

/// Writes one line.
pub fn log(level: Level, category: &str, context: &str, msg: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let name = match level {
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
        Level::Access => "ACCESS",
        Level::Info => "INFO",
        Level::Error => "ERROR",
        Level::Fatal => "FATAL",
    };
    let line = format!("{} | {name} | {category} | {context} | {msg}\n", now());
    // One write per line, so that lines of different connections do not interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The time as websocketd prints it (RFC 1123, UTC).
fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc1123(secs)
}

fn rfc1123(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} -0000",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::rfc1123(0), "Thu, 01 Jan 1970 00:00:00 -0000");
        // 2026-12-02 12:30:58 UTC, a Wednesday.
        assert_eq!(
            super::rfc1123(1_796_214_658),
            "Wed, 02 Dec 2026 12:30:58 -0000"
        );
        assert_eq!(
            super::rfc1123(951_782_400),
            "Tue, 29 Feb 2000 00:00:00 -0000"
        );
    }
}
