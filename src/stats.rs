//! `lbuild cache stats`: where the machine store is, what it holds, and
//! how often builds found their work already done (from `hits.jsonl`).

use crate::report::{Mode, Reporter};
use crate::units::human_size;

/// `lbuild cache stats`: where the machine store is and what it holds.
pub(crate) fn store_stats(reporter: &Reporter) -> crate::Result<()> {
    let store = crate::gc::machine_store_from_env()?;
    let s = store.stats();
    let hits = crate::hits::summary(store.root());
    if reporter.mode == Mode::Json {
        reporter.json(&serde_json::json!({"store": store.root(), "entries": s.entries, "entry_bytes": s.entry_bytes, "trees": s.trees, "tree_bytes": s.tree_bytes, "bytes": s.entry_bytes + s.tree_bytes, "hits": hits}));
    } else {
        reporter.result(format!("store    {}", store.root().display()));
        reporter.result(format!(
            "entries  {:>8}  {}  (compressed files, shared by every project)",
            s.entries,
            human_size(s.entry_bytes)
        ));
        reporter.result(format!(
            "trees    {:>8}  {}  (installed dependency trees)",
            s.trees,
            human_size(s.tree_bytes)
        ));
        reporter.result(format!(
            "total              {}",
            human_size(s.entry_bytes + s.tree_bytes)
        ));
        let rate = |hit: u64, of: u64| {
            if of == 0 {
                "-".to_string()
            } else {
                format!("{hit}/{of} ({:.0}%)", 100.0 * hit as f64 / of as f64)
            }
        };
        reporter.result("");
        reporter.result(format!("hits over {} artifact builds", hits.builds));
        reporter.result(format!(
            "zips     {}  already up to date",
            rate(hits.zips_cached, hits.builds)
        ));
        reporter.result(format!(
            "entries  {}  copied compressed, not compressed again",
            rate(
                hits.entries_copied,
                hits.entries_copied + hits.entries_compressed
            )
        ));
        reporter.result(format!(
            "trees    {}  ready, installer not run ({} from the remote store)",
            rate(hits.trees_ready, hits.trees_ready + hits.trees_installed),
            hits.trees_from_remote
        ));
    }
    Ok(())
}
