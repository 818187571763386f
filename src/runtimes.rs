//! AWS Lambda's support schedule for the Python runtimes, as data: when
//! each was deprecated, and from when AWS blocks creating and updating
//! functions on it (the runtime support policy,
//! docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html).
//!
//! Owns the dates and the questions asked of them ("may a function on this
//! runtime still be updated on this day?"). It does not decide what lbuild
//! builds for (`manifest::Runtime` does); every question takes the day, so
//! each answer is testable, and [`today`] is there for callers.

use jiff::civil::Date;

/// One runtime's schedule; `None` where AWS has not announced a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schedule {
    pub name: &'static str,
    pub deprecated: Option<Date>,
    pub block_create: Option<Date>,
    pub block_update: Option<Date>,
}

const fn day(y: i16, m: i8, d: i8) -> Option<Date> {
    Some(Date::constant(y, m, d))
}

/// Oldest first. Only dates AWS has published are filled in; python3.10
/// and later have none yet (add them when AWS announces them).
pub(crate) const SCHEDULE: &[Schedule] = &[
    Schedule {
        name: "python2.7",
        deprecated: day(2021, 7, 15),
        block_create: day(2021, 7, 15),
        block_update: day(2022, 5, 30),
    },
    Schedule {
        name: "python3.6",
        deprecated: day(2022, 7, 18),
        block_create: day(2022, 7, 18),
        block_update: day(2022, 8, 29),
    },
    Schedule {
        name: "python3.7",
        deprecated: day(2023, 12, 4),
        block_create: day(2024, 1, 9),
        block_update: day(2024, 2, 8),
    },
    Schedule {
        name: "python3.8",
        deprecated: day(2024, 10, 14),
        block_create: day(2025, 2, 28),
        block_update: day(2025, 3, 31),
    },
    Schedule {
        name: "python3.9",
        deprecated: day(2025, 12, 15),
        block_create: day(2026, 8, 31),
        block_update: day(2026, 9, 30),
    },
    Schedule {
        name: "python3.10",
        deprecated: None,
        block_create: None,
        block_update: None,
    },
    Schedule {
        name: "python3.11",
        deprecated: None,
        block_create: None,
        block_update: None,
    },
    Schedule {
        name: "python3.12",
        deprecated: None,
        block_create: None,
        block_update: None,
    },
    Schedule {
        name: "python3.13",
        deprecated: None,
        block_create: None,
        block_update: None,
    },
    Schedule {
        name: "python3.14",
        deprecated: None,
        block_create: None,
        block_update: None,
    },
];

/// The schedule of `name`; `None` for a runtime not listed and newer than
/// the table (or not Python). A runtime older than a listed one and not
/// listed itself (python3.5) gets the schedule of the next listed one: its
/// blocks came no later.
pub(crate) fn schedule(name: &str) -> Option<Schedule> {
    if let Some(s) = SCHEDULE.iter().find(|s| s.name == name) {
        return Some(*s);
    }
    let version = |n: &str| -> Option<(u32, u32)> {
        let v = n.strip_prefix("python")?;
        let (major, minor) = v.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    };
    let v = version(name)?;
    SCHEDULE
        .iter()
        .find(|s| version(s.name).is_some_and(|listed| listed > v))
        .filter(|s| s.block_update.is_some())
        .copied()
}

/// Whether AWS refuses updates to functions on `name` on `today`.
pub(crate) fn update_blocked(name: &str, today: Date) -> bool {
    schedule(name)
        .and_then(|s| s.block_update)
        .is_some_and(|d| d <= today)
}

/// The oldest runtime among `supported` (lbuild's, oldest first) whose
/// functions AWS still lets you update on `today`.
pub(crate) fn oldest_updatable<'a>(supported: &[&'a str], today: Date) -> Option<&'a str> {
    supported
        .iter()
        .copied()
        .find(|r| !update_blocked(r, today))
}

/// Today in UTC (AWS's dates are days; the hour does not matter here).
pub(crate) fn today() -> Date {
    jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LBUILD: &[&str] = &[
        "python3.9",
        "python3.10",
        "python3.11",
        "python3.12",
        "python3.13",
        "python3.14",
    ];

    #[test]
    fn blocks_follow_the_dates() {
        let before = Date::constant(2025, 3, 30);
        let after = Date::constant(2025, 3, 31);
        assert!(!update_blocked("python3.8", before));
        assert!(update_blocked("python3.8", after));
        assert!(update_blocked("python3.6", before));
        assert!(update_blocked("python3.5", before), "older than the table");
        assert!(!update_blocked("python3.12", Date::constant(2030, 1, 1)));
        assert!(!update_blocked("nodejs20.x", after));
        assert_eq!(oldest_updatable(LBUILD, after), Some("python3.9"));
        assert_eq!(
            oldest_updatable(LBUILD, Date::constant(2026, 9, 30)),
            Some("python3.10")
        );
    }

    #[test]
    fn the_table_is_oldest_first_and_dates_are_ordered() {
        for w in SCHEDULE.windows(2) {
            let minor = |n: &str| n.rsplit('.').next().unwrap().parse::<u32>().unwrap();
            let major = |n: &str| n.as_bytes()[6];
            assert!((major(w[0].name), minor(w[0].name)) < (major(w[1].name), minor(w[1].name)));
        }
        for s in SCHEDULE {
            if let (Some(d), Some(c), Some(u)) = (s.deprecated, s.block_create, s.block_update) {
                assert!(d <= c && c <= u, "{}", s.name);
            }
        }
    }
}
