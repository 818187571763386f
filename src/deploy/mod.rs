//! `lbuild deploy`: put built zips on existing Lambda functions and publish
//! layers, making no write call when the deployed code is already the same.
//!
//! Owns the AWS side of lbuild: which artifacts a deploy covers and their
//! names in AWS ([`artifacts`]), the decisions that need no call (a zip over
//! the direct-upload limit needs a bucket, runtime and architecture
//! mismatches, a function's new layer list: [`plan`]), what a deploy did
//! and its lines ([`report`]), errors that say what to do and name the IAM
//! action a denial needed ([`error`]) — none of which touches the SDK — and
//! the SDK calls themselves ([`aws`]). It does not build (the caller passes
//! finished artifacts) and never creates or deletes functions.
//!
//! The work is split in two phases so that every check happens before the
//! first write: a read phase (ListLayerVersions, GetLayerVersion,
//! GetFunction, HeadObject) that `--plan` stops after, then the writes
//! (PutObject, PublishLayerVersion, UpdateFunctionCode,
//! UpdateFunctionConfiguration), layers first.
//!
//! The whole module is behind the `aws` cargo feature (on by default); a
//! build without it says so when asked to deploy (`cli.rs`).

mod artifacts;
mod aws;
mod error;
mod plan;
mod report;

pub use artifacts::{DeployOptions, FunctionArtifact, LayerArtifact, LayerRef, artifacts_from};
pub use aws::{DeployedCode, Deployer, deploy};
pub use error::DeployError;
pub use report::{DeployReport, FunctionReport, LayerReport, LayersReport, S3Object, Status};

type Result<T, E = DeployError> = std::result::Result<T, E>;
