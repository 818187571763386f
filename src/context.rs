//! The services one command builds with, made once per command and handed
//! to every stage: no stage reaches for a process-wide store, remote or
//! switch of its own.
//!
//! It owns what a build is given (the reporter, the machine store, the
//! remote store if any, whether keys explain themselves and whether stages
//! compute reasons), and the build's shared sources listings (one walk per
//! sources root, see `walk::Listings`, made per workspace build). It does
//! not own the cache database: that is opened lazily by the pipeline (a
//! no-op of a cached workspace opens it once) and handed to the stages
//! beside the context as `&mut Cache`, the one service a stage writes to.

use std::sync::Arc;

use crate::manifest::Plan;
use crate::remote::RemoteStore;
use crate::report::{Mode, Reporter};
use crate::store::MachineStore;

/// What a build is handed: see the module docs.
#[derive(Clone)]
pub(crate) struct BuildContext<'r> {
    pub reporter: &'r Reporter,
    /// The machine store shared by every project on this machine.
    pub store: MachineStore,
    /// The remote store, when the command line, environment or manifest
    /// names one (connected on first use).
    pub remote: Option<Arc<dyn RemoteStore>>,
    /// Keys keep their readable inputs (`-v`).
    pub explain: bool,
    /// Stages say why they ran (`-v`, `lbuild explain`, `--json`).
    pub reasons: bool,
    /// The sources listings of this build, one walk per shared root (see
    /// `walk::Listings`): empty here; `pipeline::build_workspace` gives each
    /// workspace build a new one, so a listing never outlives its build.
    pub listings: Arc<crate::walk::Listings>,
}

impl<'r> BuildContext<'r> {
    /// The context for building `plan` (any artifact of a workspace: they
    /// share the cache directory, the store and the remote configuration).
    pub(crate) fn for_plan(plan: &Plan, reporter: &'r Reporter) -> crate::Result<Self> {
        let remote = match remote_config_of(plan)? {
            Some(config) => crate::remote::connect(&config)?,
            None => None,
        };
        Ok(Self::new(reporter, machine_store_of(plan), remote))
    }

    /// The context for building the artifacts of `ws`.
    pub(crate) fn for_workspace(
        ws: &crate::manifest::Workspace,
        reporter: &'r Reporter,
    ) -> crate::Result<Self> {
        Self::for_plan(&ws.artifacts[0], reporter)
    }

    pub(crate) fn new(
        reporter: &'r Reporter,
        store: MachineStore,
        remote: Option<Arc<dyn RemoteStore>>,
    ) -> Self {
        BuildContext {
            reporter,
            store,
            remote,
            explain: reporter.verbose,
            reasons: reporter.verbose || reporter.explain || reporter.mode == Mode::Json,
            listings: Arc::default(),
        }
    }

    /// The same services, reporting to `reporter` (an artifact's held
    /// warnings).
    pub(crate) fn with_reporter<'s>(&self, reporter: &'s Reporter) -> BuildContext<'s> {
        BuildContext {
            reporter,
            store: self.store.clone(),
            remote: self.remote.clone(),
            explain: self.explain,
            reasons: self.reasons,
            listings: self.listings.clone(),
        }
    }

    /// The remote store, if there is one and it may be written to.
    pub(crate) fn writable_remote(&self) -> Option<&dyn RemoteStore> {
        self.remote.as_deref().filter(|r| r.can_write())
    }
}

/// The machine store a plan's build shares with every project (the
/// project's own cache directory when no store directory is known).
pub(crate) fn machine_store_of(plan: &Plan) -> MachineStore {
    MachineStore::at(
        plan.env
            .store_dir
            .clone()
            .unwrap_or_else(|| plan.cache_dir.clone()),
    )
}

/// The remote configuration a plan asks for, if any (the command line and
/// `LBUILD_REMOTE_CACHE`, read into the plan's environment, before the
/// manifest's `[cache] remote`).
fn remote_config_of(plan: &Plan) -> crate::Result<Option<crate::remote::RemoteConfig>> {
    let env = &plan.env;
    let Some(url) = env.remote_cache.as_deref().or(plan.remote_cache.as_deref()) else {
        return Ok(None);
    };
    let mut config = crate::remote::parse(url, env.remote_cache_mode.as_deref(), env.ci)?;
    let mode = match env.remote_trust.as_deref() {
        Some(t) => crate::remote::trust::TrustMode::parse(t).ok_or_else(|| crate::Error::Input {
            message: format!(
                "LBUILD_REMOTE_TRUST={:?} is not signed or bucket",
                crate::sanitize::escape_controls(t)
            ),
            hint: "set it to signed (only objects signed by a trusted key) or bucket (anything the bucket holds)".into(),
        })?,
        None => plan.remote_trust.mode.unwrap_or_default(),
    };
    let mut keys = plan.remote_trust.trusted_keys.clone();
    keys.extend(env.trusted_keys.clone());
    config.trust = crate::remote::trust::from_config(mode, &keys, env.signing_key.as_deref())?;
    if let Some(d) = env.remote_deadline.as_deref() {
        config.deadline = d
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e6)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| crate::Error::Input {
                message: format!(
                    "LBUILD_REMOTE_DEADLINE={:?} is not a number of seconds",
                    crate::sanitize::escape_controls(d)
                ),
                hint: "set it to the seconds a build may wait on the remote cache, e.g. 10".into(),
            })?;
    }
    Ok(Some(config))
}
