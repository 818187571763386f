//! Which runtime a project asks for (`.python-version`, `requires-python`
//! as PEP 440) and the runtime AWS still lets it update to.

use std::path::Path;

/// The runtimes lbuild builds for, oldest first.
pub(super) fn supported_runtimes() -> Vec<String> {
    (0..=30)
        .filter_map(|m| crate::manifest::Runtime::parse(&format!("python3.{m}")))
        .map(|r| r.name())
        .collect()
}

/// The runtime to write for `written` (a template's or a version file's),
/// and the comment/note when it is not `written` itself: AWS no longer
/// lets functions on it be updated (the oldest runtime lbuild builds for
/// that AWS still updates is written instead), or lbuild does not build
/// for it.
pub(super) fn carry_runtime(written: &str, today: jiff::civil::Date) -> (String, Option<String>) {
    let supported = supported_runtimes();
    let names: Vec<&str> = supported.iter().map(String::as_str).collect();
    let schedule = crate::runtimes::schedule(written);
    if crate::runtimes::update_blocked(written, today) {
        let instead = crate::runtimes::oldest_updatable(&names, today).unwrap_or("python3.12");
        let s = schedule.unwrap_or(crate::runtimes::SCHEDULE[0]);
        let when = |d: Option<jiff::civil::Date>| d.map(|d| d.to_string()).unwrap_or("?".into());
        return (
            instead.to_string(),
            Some(format!(
                "{written}: AWS no longer lets you update functions on it (deprecated {}, updates blocked since {}); wrote {instead}, the oldest runtime lbuild builds for that AWS still updates: test the code on it",
                when(s.deprecated),
                when(s.block_update),
            )),
        );
    }
    if crate::manifest::Runtime::parse(written).is_none() {
        return (
            "python3.12".into(),
            Some(format!(
                "{written}: lbuild builds for {} only; wrote python3.12",
                names.join(", ")
            )),
        );
    }
    let note = schedule
        .and_then(|s| Some((s.deprecated.filter(|d| *d <= today)?, s.block_update)))
        .map(|(d, u)| {
            format!(
                "{written}: deprecated by AWS since {d}{}; plan the move to a newer runtime",
                u.map(|u| format!(", updates blocked from {u}"))
                    .unwrap_or_default()
            )
        });
    (written.to_string(), note)
}

/// A value read from the repository and the file it came from.
type Found = (String, String);

/// `python3.N` from `.python-version`, else the oldest runtime lbuild
/// builds for (and AWS still updates) that pyproject's `requires-python`
/// allows (PEP 440).
pub(super) fn runtime_from_files(dir: &Path, today: jiff::civil::Date) -> Option<Found> {
    if let Ok(text) = fs_err::read_to_string(dir.join(".python-version"))
        && let Some(line) = text.lines().next()
    {
        let v = line.trim();
        let mut parts = v.trim_start_matches("python").split('.');
        if let (Some("3"), Some(minor)) = (parts.next(), parts.next())
            && minor.chars().all(|c| c.is_ascii_digit())
        {
            return Some((format!("python3.{minor}"), ".python-version".into()));
        }
    }
    let text = fs_err::read_to_string(dir.join("pyproject.toml")).ok()?;
    let doc: toml::Table = toml::from_str(&text).ok()?;
    let spec = doc.get("project")?.get("requires-python")?.as_str()?;
    let specifiers: pep508_rs::pep440_rs::VersionSpecifiers = spec.parse().ok()?;
    let supported = supported_runtimes();
    supported
        .iter()
        .filter(|r| !crate::runtimes::update_blocked(r, today))
        .find(|r| {
            r.strip_prefix("python")
                .and_then(|v| v.parse::<pep508_rs::pep440_rs::Version>().ok())
                .is_some_and(|v| specifiers.contains(&v))
        })
        .map(|r| {
            (
                r.clone(),
                format!("pyproject.toml requires-python {spec:?}"),
            )
        })
}
