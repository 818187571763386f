//! Globs as the manifest uses them: compiled once at load (`*` stops at
//! `/`), refused when they could reach outside their root, and read as
//! text to decide which directories an exclude list leaves out whole.

use std::path::Path;

use globset::{GlobSet, GlobSetBuilder};

/// Compiles globs so that `*` stops at `/` (gitignore-like), refusing any
/// glob that could reach outside its root. The error names the glob.
#[cfg(test)]
pub(crate) fn compile_globs(globs: &[String]) -> Result<GlobSet, (String, String)> {
    compile_each(globs.iter().map(String::as_str)).map_err(|(i, m)| (globs[i].clone(), m))
}

/// [`compile_globs`], the error giving the index of the glob at fault.
pub(crate) fn compile_each<'a>(
    globs: impl IntoIterator<Item = &'a str>,
) -> Result<GlobSet, (usize, String)> {
    let mut b = GlobSetBuilder::new();
    let mut n = 0;
    for (i, g) in globs.into_iter().enumerate() {
        check_relative_glob(g).map_err(|m| (i, m))?;
        b.add(compile_one(g).map_err(|m| (i, m))?);
        n = i + 1;
    }
    b.build().map_err(|e| (n.saturating_sub(1), e.to_string()))
}

fn compile_one(g: &str) -> Result<globset::Glob, String> {
    globset::GlobBuilder::new(g)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.kind().to_string())
}

/// A glob must stay inside its root: not absolute, no `..` segment.
pub(crate) fn check_relative_glob(g: &str) -> Result<(), String> {
    if g.is_empty() {
        return Err("empty glob".into());
    }
    if g.starts_with('/') || Path::new(g).is_absolute() {
        return Err("is absolute: it would reach outside the root".into());
    }
    if g.split('/').any(|seg| seg == "..") {
        return Err("contains '..': it would reach outside the root".into());
    }
    Ok(())
}

/// True when `s` has no glob syntax.
pub(crate) fn is_literal(s: &str) -> bool {
    !s.contains(['*', '?', '[', '{', '\\'])
}

/// The leading path segments of a glob that contain no wildcard: the
/// directory a walk for it starts from (`config/*.json` -> `config`).
pub(crate) fn literal_prefix(pattern: &str) -> String {
    let segs: Vec<&str> = pattern.split('/').collect();
    let literal: Vec<&str> = segs[..segs.len() - 1]
        .iter()
        .take_while(|s| is_literal(s))
        .copied()
        .collect();
    literal.join("/")
}

/// The directories an exclude list leaves out whole, decided from the
/// glob text alone (never by trying made-up paths):
///
/// - `x/**` and `x/**/*` match every path below any directory `x` matches,
///   so such a directory is not entered (`**/x/**` prunes every `x`);
/// - a glob whose last segment has no wildcard (`vendored`,
///   `**/node_modules`) names a path; when that path is a directory it is
///   left out with everything below it.
///
/// Anything else (`tests/*`, `tests/*/*.*`) is matched file by file, so a
/// directory they do not cover entirely is walked.
///
/// The include list prunes too, also from its text: a glob matches only
/// below its literal leading directories (`fn003/**/*.py` only under
/// `fn003/`), so a directory outside every include's literal prefix (and
/// not on the way to one) holds nothing the includes select. In a
/// workspace of N functions under one root this keeps each function's walk
/// to its own directories instead of all N. A glob with no literal
/// directory (`**/*.py`, `*.py`, `{a,b}/x.py`) reaches everywhere.
#[derive(Debug, Clone)]
pub struct Pruner {
    dirs: GlobSet,
    /// The include globs' literal prefixes; `None` when one of them reaches
    /// everywhere.
    reach: Option<Vec<String>>,
}

impl Pruner {
    /// From already checked exclude globs, with includes that reach
    /// everywhere.
    #[cfg(test)]
    pub fn from_excludes(excludes: &[String]) -> Result<Pruner, (String, String)> {
        Pruner::from_globs(&["**".to_string()], excludes)
    }

    /// From already checked include and exclude globs.
    pub fn from_globs(
        includes: &[String],
        excludes: &[String],
    ) -> Result<Pruner, (String, String)> {
        let mut b = GlobSetBuilder::new();
        for g in excludes {
            if let Some(dir) = pruned_dir_glob(g) {
                b.add(compile_one(dir).map_err(|m| (g.clone(), m))?);
            }
        }
        let dirs = b.build().map_err(|e| (String::new(), e.to_string()))?;
        let reach: Vec<String> = includes.iter().map(|g| literal_prefix(g)).collect();
        let reach = (!reach.iter().any(String::is_empty)).then_some(reach);
        Ok(Pruner { dirs, reach })
    }

    /// Whether the directory `rel` ('/'-separated, relative to the root,
    /// no trailing '/') and everything below it is left out.
    pub fn prunes(&self, rel: &str) -> bool {
        !rel.is_empty() && (self.dirs.is_match(rel) || !self.reaches(rel))
    }

    /// Whether some include glob can match below directory `rel`: `rel` is
    /// on the way to a literal prefix, is one, or lies under one.
    fn reaches(&self, rel: &str) -> bool {
        let Some(reach) = &self.reach else {
            return true;
        };
        let under = |dir: &str, of: &str| {
            dir.strip_prefix(of)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        reach.iter().any(|p| under(rel, p) || under(p, rel))
    }
}

/// The glob of the directories `g` covers entirely, if any.
fn pruned_dir_glob(g: &str) -> Option<&str> {
    let mut dir = g;
    while let Some(p) = dir
        .strip_suffix("/**/*")
        .or_else(|| dir.strip_suffix("/**"))
    {
        dir = p;
    }
    if dir != g {
        return Some(dir);
    }
    if g == "**" || g == "**/*" {
        return Some("**");
    }
    let last = g.rsplit('/').next().unwrap_or(g);
    is_literal(last).then_some(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pruner(globs: &[&str]) -> Pruner {
        let globs: Vec<String> = globs.iter().map(|s| s.to_string()).collect();
        Pruner::from_excludes(&globs).unwrap()
    }

    #[test]
    fn globs_refuse_escaping_root() {
        assert!(check_relative_glob("../x").is_err());
        assert!(check_relative_glob("a/../../x").is_err());
        assert!(check_relative_glob("/etc/*").is_err());
        assert!(check_relative_glob("src/**/*.py").is_ok());
    }

    #[test]
    fn star_does_not_cross_directories() {
        let set = compile_globs(&["*.py".into()]).unwrap();
        assert!(set.is_match("app.py"));
        assert!(!set.is_match("pkg/app.py"));
    }

    #[test]
    fn literal_prefix_stops_at_first_wildcard() {
        assert_eq!(literal_prefix("config/*.json"), "config");
        assert_eq!(literal_prefix("a/b/**/x.yml"), "a/b");
        assert_eq!(literal_prefix("*.json"), "");
        assert_eq!(literal_prefix("settings.json"), "");
    }

    #[test]
    fn prunes_only_what_the_text_covers() {
        let p = pruner(&["tests/*", "tests/*/*.*"]);
        assert!(!p.prunes("tests"));
        assert!(!p.prunes("tests/a"));
        assert!(!p.prunes("tests/a/b"));

        let p = pruner(&[
            "x/**",
            "y/**/*",
            "**/cache/**",
            "vendored",
            "**/node_modules",
        ]);
        for dir in ["x", "y", "cache", "a/b/cache", "vendored", "a/node_modules"] {
            assert!(p.prunes(dir), "{dir}");
        }
        for dir in ["a/x", "xx", "a/vendored", "cache2", "src"] {
            assert!(!p.prunes(dir), "{dir}");
        }
        assert!(pruner(&["**"]).prunes("anything/below"));
        assert!(!pruner(&["*.py", "**/*.pyc"]).prunes("pkg"));
        assert!(!pruner(&[]).prunes(""));
    }

    #[test]
    fn includes_prune_what_no_include_can_reach() {
        let p = |inc: &[&str]| {
            let inc: Vec<String> = inc.iter().map(|s| s.to_string()).collect();
            Pruner::from_globs(&inc, &[]).unwrap()
        };
        let ws = p(&["fn003/**/*.py", "shared/lib/*.py", "a/b.py"]);
        for dir in [
            "fn003",
            "fn003/h",
            "fn003/h/x",
            "shared",
            "shared/lib",
            "shared/lib/d",
            "a",
        ] {
            assert!(!ws.prunes(dir), "{dir}");
        }
        for dir in ["fn004", "fn0031", "fn", "shared/other", "sharedx", "b"] {
            assert!(ws.prunes(dir), "{dir}");
        }
        // A glob with no literal directory reaches everywhere.
        for inc in [&["fn003/**", "**/*.py"][..], &["*.py"], &["{a,b}/x.py"]] {
            assert!(!p(inc).prunes("anything/below"), "{inc:?}");
        }
    }

    #[test]
    fn every_include_pruned_directory_holds_no_match() {
        // What include pruning leaves out, the include globs never match.
        let inc = ["fn003/**/*.py", "shared/lib/*.py", "x/[ab]/*.py"];
        let set = compile_globs(&inc.map(String::from)).unwrap();
        let p = Pruner::from_globs(&inc.map(String::from), &[]).unwrap();
        for file in [
            "fn003/app.py",
            "fn003/a/b/c.py",
            "shared/lib/u.py",
            "x/a/m.py",
            "x/b/m.py",
            "fn004/app.py",
            "shared/u.py",
            "shared/lib/d/u.py",
            "y/m.py",
            "app.py",
        ] {
            let pruned = file.match_indices('/').any(|(i, _)| p.prunes(&file[..i]));
            assert!(
                !(pruned && set.is_match(file)),
                "{file} matches but is pruned"
            );
        }
        assert!(p.prunes("fn004") && p.prunes("y"));
    }

    #[test]
    fn every_pruned_directory_is_covered_by_its_glob() {
        // What the pruner leaves out, the glob itself matches below it.
        for g in ["x/**", "a/**/b/**", "y/**/*", "**/c/**"] {
            let set = compile_globs(&[g.to_string()]).unwrap();
            let dir = match g {
                "x/**" => "x",
                "a/**/b/**" => "a/k/b",
                "y/**/*" => "y",
                _ => "p/c",
            };
            assert!(pruner(&[g]).prunes(dir), "{g}");
            for below in ["f", "d/f", "d/e/.hidden"] {
                assert!(set.is_match(format!("{dir}/{below}")), "{g} {below}");
            }
        }
    }
}
