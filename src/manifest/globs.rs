//! Globs as the manifest uses them: compiled once at load (`*` stops at
//! `/`), refused when they could reach outside their root, and read as
//! text to decide which directories an exclude list leaves out whole.
//!
//! A workspace repeats its globs (every function's `shared/**/*.py`, the
//! same excludes): one load compiles each distinct glob once ([`Interner`])
//! and the artifacts share it ([`Globs`]), so the regex is built, and its
//! lazy DFA warmed, once rather than once per artifact.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use globset::{Candidate, GlobSet, GlobSetBuilder};

/// Compiles globs so that `*` stops at `/` (gitignore-like), refusing any
/// glob that could reach outside its root. The error names the glob.
#[cfg(test)]
pub(crate) fn compile_globs(globs: &[String]) -> Result<GlobSet, (String, String)> {
    compile_each(globs.iter().map(String::as_str)).map_err(|(i, m)| (globs[i].clone(), m))
}

/// [`compile_globs`], the error giving the index of the glob at fault:
/// what [`Globs`] must match like (the tests hold them to it).
#[cfg(test)]
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

/// One glob, compiled on its own.
#[derive(Debug)]
struct Pattern {
    text: String,
    matcher: Matcher,
    /// Its literal leading directories (`fn003/**/*.py` -> `fn003`): a
    /// name outside them cannot match, decided without the matcher.
    dirs: String,
}

#[derive(Debug)]
enum Matcher {
    /// `DIRS/**/*SUFFIX` or `DIRS/**` (DIRS and SUFFIX free of glob
    /// syntax, SUFFIX free of `/`): globset's regex for it is
    /// `^DIRS(?:/|/.*/)[^/]*SUFFIX$` (or `^DIRS/.*$`), which holds exactly
    /// for a name that starts with `DIRS/` and whose rest ends with
    /// SUFFIX. The commonest workspace glob (a function's own directory)
    /// is decided with two comparisons, no regex built or run.
    Below { dirs: String, suffix: String },
    /// Anything else: a one-glob [`GlobSet`], so it is matched by the same
    /// strategy (literal, extension, prefix, regex) as in any set.
    Set(GlobSet),
}

impl Pattern {
    fn compile(g: &str) -> Result<Pattern, String> {
        check_relative_glob(g)?;
        let glob = compile_one(g)?;
        let matcher = match below(g) {
            Some((dirs, suffix)) => Matcher::Below { dirs, suffix },
            None => Matcher::Set(
                GlobSetBuilder::new()
                    .add(glob)
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
        };
        Ok(Pattern {
            text: g.to_string(),
            matcher,
            dirs: literal_prefix(g),
        })
    }

    /// Whether `name` lies under the literal leading directories, which
    /// the glob's regex spells out character by character before the
    /// `/` (or `/**`) that follows them: a name that does not is no match.
    /// Necessary, not sufficient.
    fn may_match(&self, name: &str) -> bool {
        self.dirs.is_empty()
            || name
                .strip_prefix(self.dirs.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// `(DIRS/, SUFFIX)` when `g` is `DIRS/**/*SUFFIX` or `DIRS/**` as
/// [`Matcher::Below`] describes, every DIRS segment non-empty.
fn below(g: &str) -> Option<(String, String)> {
    let (dirs, suffix) = match g.strip_suffix("/**") {
        Some(dirs) => (dirs, ""),
        None => {
            let at = g.find("/**/*")?;
            (&g[..at], &g[at + "/**/*".len()..])
        }
    };
    // Conservative: any character with a meaning somewhere in a glob.
    let plain = |s: &str| !s.contains(['*', '?', '[', ']', '{', '}', ',', '\\', '!']);
    let ok = !dirs.is_empty()
        && dirs.split('/').all(|seg| !seg.is_empty() && plain(seg))
        && plain(suffix)
        && !suffix.contains('/');
    ok.then(|| (format!("{dirs}/"), suffix.to_string()))
}

/// An ordered list of globs, each compiled once per manifest load and
/// shared by every artifact that writes it: a name matches when one of
/// them matches (what one [`GlobSet`] of them all answers).
#[derive(Debug, Clone, Default)]
pub struct Globs(Vec<Arc<Pattern>>);

impl Globs {
    /// Whether one of the globs matches `name` (`/`-separated, relative
    /// to the globs' root).
    pub fn is_match(&self, name: &str) -> bool {
        let mut candidate = None;
        for p in &self.0 {
            if !p.may_match(name) {
                continue;
            }
            let matched = match &p.matcher {
                Matcher::Below { dirs, suffix } => name
                    .strip_prefix(dirs.as_str())
                    .is_some_and(|rest| rest.ends_with(suffix.as_str())),
                Matcher::Set(set) => {
                    set.is_match_candidate(candidate.get_or_insert_with(|| Candidate::new(name)))
                }
            };
            if matched {
                return true;
            }
        }
        false
    }

    /// The globs as written, in order.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|p| p.text.as_str())
    }
}

impl crate::watch_root::NameMatcher for Globs {
    fn is_match(&self, name: &str) -> bool {
        Globs::is_match(self, name)
    }
}

/// A compiled pruner, or the glob at fault and why.
type CompiledPruner = Result<Pruner, (String, String)>;
type IncludesExcludes = (Vec<String>, Vec<String>);

/// What one manifest load compiled, by glob text (the options are the
/// same for every glob the manifest holds): each distinct glob and
/// include/exclude pair is compiled once however many artifacts write it. Errors are kept as the glob's own (index, message), so each
/// artifact still points at its own position.
#[derive(Default)]
pub(crate) struct Interner {
    patterns: RefCell<HashMap<String, Result<Arc<Pattern>, String>>>,
    pruners: RefCell<HashMap<IncludesExcludes, CompiledPruner>>,
}

impl Interner {
    /// The globs as [`Globs`], each compiled once per load; an error gives
    /// the index of the glob at fault.
    pub(crate) fn globs<'a>(
        &self,
        globs: impl IntoIterator<Item = &'a str>,
    ) -> Result<Globs, (usize, String)> {
        let mut memo = self.patterns.borrow_mut();
        let mut out = Vec::new();
        for (i, g) in globs.into_iter().enumerate() {
            let compiled = memo
                .entry(g.to_string())
                .or_insert_with(|| Pattern::compile(g).map(Arc::new));
            out.push(compiled.clone().map_err(|m| (i, m))?);
        }
        Ok(Globs(out))
    }

    /// [`Pruner::from_globs`], once per distinct pair per load.
    pub(crate) fn pruner(
        &self,
        includes: &[String],
        excludes: &[String],
    ) -> Result<Pruner, (String, String)> {
        self.pruners
            .borrow_mut()
            .entry((includes.to_vec(), excludes.to_vec()))
            .or_insert_with(|| Pruner::from_globs(includes, excludes))
            .clone()
    }
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
    /// Shared by the clones (one compiled regex, its DFA warmed once).
    dirs: Arc<GlobSet>,
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
        Ok(Pruner {
            dirs: Arc::new(dirs),
            reach,
        })
    }

    /// Whether the directory `rel` ('/'-separated, relative to the root,
    /// no trailing '/') and everything below it is left out.
    pub fn prunes(&self, rel: &str) -> bool {
        // An empty set matches nothing: skip preparing the candidate (the
        // shared listing asks every artifact's pruner about each directory).
        !rel.is_empty()
            && ((!self.dirs.is_empty() && self.dirs.is_match(rel)) || !self.reaches(rel))
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
    // Once: `x/**/*/**` covers every directory below `x`, not `x` itself
    // (it leaves `x/a.py` alone), so what is left is a directory glob,
    // not another glob to strip.
    if let Some(dir) = g.strip_suffix("/**/*").or_else(|| g.strip_suffix("/**")) {
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

    /// Globs that share literal directories, overlap, negate classes,
    /// recurse, or match a directory's own name.
    const TRICKY: &[&str] = &[
        "**/*.py",
        "*.py",
        "**",
        "fn003/**/*",
        "a/b/**/*.py",
        "shared/**/*_test.py",
        "x/**/*.",
        "data/**/*.json",
        "a/**/b",
        "./a/**",
        "**/*",
        "fn003/**/*.py",
        "fn003/**",
        "fn0031/*.py",
        "shared/**/*.py",
        "shared/lib/*.py",
        "shared",
        "a/**/b/**",
        "a//b/*.py",
        "x/[ab]/*.py",
        "x/[!a]/*.py",
        "x/[/]/*.py",
        "{fn003,shared}/*.py",
        "fn00?/app.py",
        r"lit\*.py",
        "**/tests/**",
        "**/__init__.py",
        "data/*.json",
        "a/b",
        ".hidden/*",
    ];

    const NAMES: &[&str] = &[
        "app.py",
        "a",
        "a/b",
        "a/b/c",
        "a/k/b/c.py",
        "a//b/x.py",
        "a/b/x.py",
        "fn003",
        "fn003/app.py",
        "fn003/h/x.py",
        "fn003/h/x.pyc",
        "fn0031/app.py",
        "fn0031/d/app.py",
        "fn004/app.py",
        "fn00/app.py",
        "shared",
        "shared/__init__.py",
        "shared/lib/u.py",
        "shared/lib/d/u.py",
        "sharedx/u.py",
        "x/a/m.py",
        "x/b/m.py",
        "x/c/m.py",
        "x//m.py",
        "lit*.py",
        "litx.py",
        "pkg/tests/t.py",
        "tests/t.py",
        "data/s.json",
        "data/d/s.json",
        ".hidden/x",
        ".hidden",
        ".py",
        "é/ü.py",
        "fn003/\nx.py",
        "fn003/a\n/x.py",
        "fn003/",
        "fn003/.py",
        "shared/tests/db_test.py",
        "shared/_test.py",
        "x/a.",
        "x/.",
        "data/a/b/c.json",
        "data/c.json.bak",
        "a/b/c/d.py",
        "a/x/b",
        "./a/x",
    ];

    #[test]
    fn globs_match_what_one_set_of_them_matches() {
        // Every ordered pair and every single glob, as lists: the
        // interned globs (with their literal-directory precheck) answer
        // exactly what globset answers for the list as one set.
        let interner = Interner::default();
        let mut lists: Vec<Vec<&str>> = TRICKY.iter().map(|g| vec![*g]).collect();
        for a in TRICKY {
            for b in TRICKY {
                lists.push(vec![*a, *b]);
            }
        }
        lists.push(TRICKY.to_vec());
        // The text-decided shape is taken where it should be.
        assert!(below("fn003/**/*.py").is_some() && below("a/b/**").is_some());
        assert!(below("**/*.py").is_none() && below("a/**/b/*.py").is_none());
        assert!(below("a/[b]/**").is_none() && below("a/**/*.{py,txt}").is_none());
        for list in &lists {
            let globs = interner.globs(list.iter().copied()).unwrap();
            let set = compile_each(list.iter().copied()).unwrap();
            assert_eq!(globs.patterns().collect::<Vec<_>>(), *list);
            for name in NAMES {
                assert_eq!(
                    globs.is_match(name),
                    set.is_match(name),
                    "{list:?} on {name:?}"
                );
            }
        }
    }

    #[test]
    fn a_load_compiles_each_glob_once_and_errors_keep_their_index() {
        let interner = Interner::default();
        let a = interner.globs(["fn001/**/*.py", "shared/**/*.py"]).unwrap();
        let b = interner.globs(["fn002/**/*.py", "shared/**/*.py"]).unwrap();
        assert!(
            Arc::ptr_eq(&a.0[1], &b.0[1]),
            "shared/**/*.py compiled twice"
        );
        let c = interner.globs(["x/*.py"]).unwrap();
        let d = interner.globs(["y/*.py", "x/*.py"]).unwrap();
        assert!(Arc::ptr_eq(&c.0[0], &d.0[1]), "x/*.py compiled twice");
        assert!(!Arc::ptr_eq(&a.0[0], &b.0[0]));
        // A glob at fault is reported at its index in each list that
        // holds it, memoized or not.
        let first = interner.globs(["ok/*.py", "../x"]).unwrap_err();
        let again = interner.globs(["../x"]).unwrap_err();
        assert_eq!((first.0, again.0), (1, 0));
        assert_eq!(first.1, again.1);
        let bad = interner.globs(["a/*.py", "b/[z"]).unwrap_err();
        assert_eq!(bad.0, 1);
        assert_eq!(bad, compile_each(["a/*.py", "b/[z"]).unwrap_err());
        // Pruners too.
        let list = vec!["x/**".to_string(), "*.txt".to_string()];
        let p1 = interner.pruner(&list, &list).unwrap();
        let p2 = interner.pruner(&list, &list).unwrap();
        assert!(Arc::ptr_eq(&p1.dirs, &p2.dirs));
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
        // Only what lies in a subdirectory of x: x's own files stay.
        let p = pruner(&["x/**/*/**", "y/*/**"]);
        for dir in ["x/a", "x/a/b", "y/a"] {
            assert!(p.prunes(dir), "{dir}");
        }
        assert!(!p.prunes("x") && !p.prunes("y"));
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

    /// Globs and names made of the pieces that have a meaning in a glob
    /// (deterministic xorshift): the text-decided matches equal globset's,
    /// an include never prunes a directory above a name it matches, and a
    /// `DIR/**`-shaped exclude never prunes one above a name it does not.
    #[test]
    fn made_up_globs_match_and_prune_as_globset_matches() {
        let pieces = [
            "fn0", "fn0x", "a", "/", "/", "**", "*", ".py", "?", "[a-f]", "[!x]", "{a,fn0}", ".",
            "x", "é", "\\*", "]", "}", ",", "!", "-", "**/", "/**", "/**/*", "/**/*/**",
        ];
        let name_pieces = [
            "fn0", "fn0x", "a", "/", "/", "x", ".py", ".", "é", "*", "]", "}", ",", "!", "b",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let made = |from: &[&str], rnd: &mut dyn FnMut(usize) -> usize| {
            let k = 1 + rnd(6);
            (0..k).map(|_| from[rnd(from.len())]).collect::<String>()
        };
        // Names as a walk makes them: no empty segment.
        let names: Vec<String> = (0..400)
            .map(|_| made(&name_pieces, &mut rnd))
            .filter(|n| !n.split('/').any(str::is_empty))
            .collect();
        let dirs_above = |n: &str| {
            let segs: Vec<&str> = n.split('/').collect();
            (1..segs.len())
                .map(|k| segs[..k].join("/"))
                .collect::<Vec<_>>()
        };
        for _ in 0..3000 {
            let g = made(&pieces, &mut rnd);
            if g.contains("//") {
                continue;
            }
            let Ok(globs) = Interner::default().globs([g.as_str()]) else {
                continue;
            };
            let set = compile_each([g.as_str()]).unwrap();
            let include = Pruner::from_globs(std::slice::from_ref(&g), &[]).unwrap();
            let exclude = (g.ends_with("/**") || g.ends_with("/**/*"))
                .then(|| Pruner::from_excludes(std::slice::from_ref(&g)).unwrap());
            for n in &names {
                let matched = set.is_match(n);
                assert_eq!(globs.is_match(n), matched, "{g:?} on {n:?}");
                for d in dirs_above(n) {
                    assert!(
                        !(matched && include.prunes(&d)),
                        "include {g:?} prunes {d:?} above {n:?}"
                    );
                    if let Some(p) = &exclude {
                        assert!(
                            matched || !p.prunes(&d),
                            "exclude {g:?} prunes {d:?} above {n:?}"
                        );
                    }
                }
            }
        }
    }
}
