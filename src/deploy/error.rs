//! Deploy errors: each says what failed and where, and its hint what to do
//! (a denial names the IAM action to allow). [`classify`] turns what an
//! API call's failure said (code, message, HTTP status) into one of them;
//! reading those out of an SDK error is `aws.rs`'s job.

use std::path::PathBuf;

use crate::size::DIRECT_UPLOAD_LIMIT;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(
        "{name}: {} is {} bytes, over the {DIRECT_UPLOAD_LIMIT}-byte limit for a direct upload, and no S3 bucket is set",
        zip.display(),
        size
    )]
    NeedsBucket {
        name: String,
        zip: PathBuf,
        size: u64,
    },
    #[error("no AWS region is configured")]
    NoRegion,
    #[error("no AWS credentials found: {message}")]
    NoCredentials { message: String },
    #[error("the Lambda function {name} does not exist in {region}")]
    FunctionNotFound {
        name: String,
        region: String,
        create: String,
    },
    #[error("access denied: {action} on {resource}: {message}")]
    AccessDenied {
        action: &'static str,
        resource: String,
        message: String,
    },
    #[error("{name}: the function's {what} is {deployed} but lambda.toml says {manifest}")]
    Mismatch {
        name: String,
        what: &'static str,
        deployed: String,
        manifest: String,
    },
    #[error("{action} {resource} failed: {message}")]
    Api {
        action: &'static str,
        resource: String,
        code: Option<String>,
        message: String,
    },
    #[error("{name}: the update did not finish: {message}")]
    UpdateFailed { name: String, message: String },
    #[error("{name}: Lambda reports CodeSha256 {got} after the upload, expected {expected}")]
    HashMismatch {
        name: String,
        expected: String,
        got: String,
    },
    /// A call failed after earlier writes of the same deploy succeeded:
    /// says which state the function is left in.
    #[error("{source}\n  {name} is left with {state}")]
    Partial {
        name: String,
        state: &'static str,
        source: Box<DeployError>,
    },
    #[error("LBUILD_AWS_TIMEOUT={value:?} is not a number of seconds from 1 to 3600")]
    BadTimeout { value: String },
    #[error("cannot start the AWS client: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl DeployError {
    /// This error, saying that `name` already runs the new code (when
    /// `code_updated`) but not its new layer list.
    pub(super) fn code_updated_first(self, name: &str, code_updated: bool) -> DeployError {
        if !code_updated {
            return self.after_layers(name);
        }
        DeployError::Partial {
            name: name.to_string(),
            state: "its new code but its previous layer list",
            source: Box::new(self),
        }
    }

    /// This error, saying that `name` still runs its previous code and
    /// layers (new layer versions may already be published; nothing uses
    /// them yet).
    pub(super) fn after_layers(self, name: &str) -> DeployError {
        if matches!(self, DeployError::Partial { .. }) {
            return self;
        }
        DeployError::Partial {
            name: name.to_string(),
            state: "its previous code and layers (new layer versions, if any, are published but not used yet)",
            source: Box::new(self),
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            DeployError::NeedsBucket { .. } => Some(
                "pass --s3-bucket BUCKET (a bucket in the function's region): the zip is uploaded to s3://BUCKET/PREFIX/SHA256.zip and deployed from there"
                    .into(),
            ),
            DeployError::NoRegion => Some(
                "set AWS_REGION (or AWS_DEFAULT_REGION), or use a profile with a region (AWS_PROFILE, `aws configure`)"
                    .into(),
            ),
            DeployError::NoCredentials { .. } => Some(
                "set AWS_PROFILE (after `aws sso login` or `aws configure`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where an instance or task role is available"
                    .into(),
            ),
            DeployError::FunctionNotFound { create, .. } => Some(format!(
                "lbuild updates existing functions and does not create them: create it with Terraform (aws_lambda_function), SAM (AWS::Serverless::Function) or the CLI:\n    {create}\n  (check the region and the name: --name, --name-prefix and --name-suffix change it)"
            )),
            DeployError::AccessDenied { action, .. } => Some(format!(
                "allow {action} on that resource in the IAM policy of the identity deploying (`aws sts get-caller-identity` shows which one)"
            )),
            DeployError::Mismatch { what, .. } => Some(format!(
                "change the function's {what} where it is defined (Terraform, SAM, console) or in lambda.toml, or deploy without --strict"
            )),
            DeployError::Api { code, .. } => match code.as_deref() {
                Some(
                    "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "ExpiredTokenException"
                    | "ExpiredToken"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch",
                ) => Some(
                    "the credentials were refused: refresh them (`aws sso login`) or check AWS_PROFILE / AWS_ACCESS_KEY_ID"
                        .into(),
                ),
                Some("NoSuchBucket") => {
                    Some("create the bucket in the function's region, or pass another --s3-bucket".into())
                }
                _ => None,
            },
            DeployError::UpdateFailed { .. } => Some(
                "see the function's LastUpdateStatusReason (`aws lambda get-function-configuration`) and deploy again"
                    .into(),
            ),
            DeployError::HashMismatch { .. } => {
                Some("deploy again; if it persists the zip changed during the upload".into())
            }
            DeployError::Partial { source, .. } => Some(format!(
                "{}deploy again: it converges (what is already on AWS is not written twice)",
                source.hint().map(|h| format!("{h}; then ")).unwrap_or_default()
            )),
            DeployError::BadTimeout { .. } => Some(
                "set LBUILD_AWS_TIMEOUT to the seconds one AWS call may take (default 20; an operation with its retries gets 3 times that, an upload more by its size), or unset it"
                    .into(),
            ),
            DeployError::Runtime(_) | DeployError::Io(_) => None,
        }
    }
}

/// A failed API call as a [`DeployError`], named after the IAM action it
/// needed when it is a denial. `code` and `message` are what the SDK read;
/// `response` the HTTP status and body when there was one: an error body
/// the SDK could not read (a proxy's page, an emulator's XML for a JSON
/// API) still says its code and message. `context` describes a failure
/// without either (a timeout, a refused connection).
pub(super) fn classify(
    action: &'static str,
    resource: &str,
    code: Option<&str>,
    message: Option<&str>,
    response: Option<(u16, &str)>,
    context: impl FnOnce() -> String,
) -> DeployError {
    let body = response.map(|(_, body)| body).unwrap_or_default();
    let xml = |tag: &str| {
        body.split_once(&format!("<{tag}>"))
            .and_then(|(_, rest)| rest.split_once(&format!("</{tag}>")))
            .map(|(v, _)| v.trim().to_string())
    };
    let code = code.map(String::from).or_else(|| xml("Code"));
    let message = match (
        message.map(String::from).or_else(|| xml("Message")),
        response,
    ) {
        (Some(m), _) => format!(
            "{}: {}",
            code.as_deref().unwrap_or("error"),
            escape_controls(&m)
        ),
        (None, Some((status, _))) => format!(
            "HTTP {status} {}",
            escape_controls(body.chars().take(200).collect::<String>().trim())
        ),
        (None, None) => context(),
    };
    let denied = matches!(
        code.as_deref(),
        Some("AccessDeniedException" | "AccessDenied" | "AuthorizationError")
    ) || response.is_some_and(|(status, _)| status == 403)
        && !matches!(
            code.as_deref(),
            Some(
                "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidSignatureException"
                    | "UnrecognizedClientException"
            )
        );
    if denied {
        DeployError::AccessDenied {
            action,
            resource: resource.to_string(),
            message,
        }
    } else {
        DeployError::Api {
            action,
            resource: resource.to_string(),
            code,
            message,
        }
    }
}

/// Text from outside (an endpoint's message or body) made safe for a
/// terminal: control characters escaped.
pub(super) fn escape_controls(text: &str) -> String {
    crate::sanitize::escape_controls(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> String {
        unreachable!("a response or a message was given")
    }

    #[test]
    fn a_denial_names_the_iam_action_in_its_hint() {
        let e = classify(
            "lambda:UpdateFunctionCode",
            "dev-hello",
            Some("AccessDeniedException"),
            Some("not authorized"),
            Some((403, "")),
            never,
        );
        assert!(
            matches!(
                e,
                DeployError::AccessDenied {
                    action: "lambda:UpdateFunctionCode",
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "access denied: lambda:UpdateFunctionCode on dev-hello: AccessDeniedException: not authorized"
        );
        assert!(
            e.hint()
                .unwrap()
                .starts_with("allow lambda:UpdateFunctionCode on that resource")
        );
        // A bare 403 (S3's HeadObject has no body) is a denial too.
        let e = classify(
            "s3:GetObject",
            "s3://b/k",
            None,
            None,
            Some((403, "")),
            never,
        );
        assert!(matches!(e, DeployError::AccessDenied { .. }), "{e:?}");
    }

    #[test]
    fn refused_credentials_are_not_a_denial() {
        let e = classify(
            "lambda:GetFunction",
            "hello",
            Some("UnrecognizedClientException"),
            Some("The security token included in the request is invalid."),
            Some((403, "")),
            never,
        );
        assert!(matches!(e, DeployError::Api { .. }), "{e:?}");
        assert!(
            e.hint().unwrap().contains("credentials were refused"),
            "{e:?}"
        );
    }

    #[test]
    fn an_unread_xml_body_still_gives_code_and_message() {
        let body = "<ErrorResponse><Error><Code>NoSuchBucket</Code>\
                    <Message> The bucket does not exist </Message></Error></ErrorResponse>";
        let e = classify(
            "s3:PutObject",
            "s3://b/k",
            None,
            None,
            Some((404, body)),
            never,
        );
        assert_eq!(
            e.to_string(),
            "s3:PutObject s3://b/k failed: NoSuchBucket: The bucket does not exist"
        );
        assert!(e.hint().unwrap().contains("create the bucket"));
        let e = classify(
            "lambda:GetFunction",
            "f",
            None,
            None,
            Some((502, "bad gateway")),
            never,
        );
        assert_eq!(
            e.to_string(),
            "lambda:GetFunction f failed: HTTP 502 bad gateway"
        );
        let e = classify("lambda:GetFunction", "f", None, None, None, || {
            "timed out".into()
        });
        assert_eq!(e.to_string(), "lambda:GetFunction f failed: timed out");
    }
}
