//! A local AWS API: moto's server on a free loopback port, one per test,
//! stopped on drop. Resources are created the way a user's Terraform would
//! (IAM role, then the function) with boto3, which ships with moto. Every
//! request moto serves is recorded, so tests can check which calls a
//! command made (moto keeps a function's LastModified on updates and has no
//! RevisionId, so the recording is the reliable witness of "no write").

#![allow(dead_code)]

use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const REGION: &str = "us-east-1";

pub(crate) struct Moto {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// One request moto served.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    /// The path without the query, e.g. `/2015-03-31/functions/hello/code`.
    pub path: String,
}

impl Request {
    pub(crate) fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD")
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Starts moto, recording requests, and waits until it answers.
    pub(crate) fn start() -> Moto {
        Self::launch(true)
    }

    /// Starts moto without the request recording, which breaks moto's
    /// signature checks (needed by [`Moto::restricted_user`]).
    pub(crate) fn start_unrecorded() -> Moto {
        Self::launch(false)
    }

    fn launch(record: bool) -> Moto {
        let dir = tempfile::Builder::new()
            .prefix("lbuild-moto-")
            .tempdir()
            .unwrap();
        let mut last_err = String::new();
        // The port is free when chosen; another process could take it
        // before moto binds, so try a few.
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
            let mut child = Command::new("python3")
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
                .arg(port.to_string())
                .env("MOTO_ENABLE_RECORDING", if record { "True" } else { "" })
                .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording"))
                .env_remove("AWS_ENDPOINT_URL")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("python3 -m moto.server (pip install \"moto[server]\")");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    last_err = format!(
                        "moto exited ({status}): {}",
                        std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
                    );
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let moto = Moto { child, port, dir };
                    moto.reset_recording();
                    return moto;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto did not start: {last_err}");
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Points `cmd` at this moto with dummy credentials and nothing from
    /// the machine's AWS configuration.
    pub(crate) fn aws_env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        no_aws_env(cmd, self.dir.path())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_ENDPOINT_URL", self.endpoint())
    }

    /// Runs a boto3 script against moto; `args` are in `sys.argv[1:]`.
    /// Returns what it printed on stdout, parsed as JSON.
    pub(crate) fn boto3(&self, script: &str, args: &[&str]) -> serde_json::Value {
        let prelude = "import boto3, io, json, sys, zipfile\n\
                       lam = boto3.client('lambda')\n\
                       s3 = boto3.client('s3')\n\
                       iam = boto3.client('iam')\n";
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(format!("{prelude}{script}")).args(args);
        let out = self.aws_env(&mut cmd).output().unwrap();
        assert!(
            out.status.success(),
            "boto3 script failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"))
        }
    }

    /// Creates an IAM role and a function with a placeholder zip, as a
    /// Terraform configuration with a placeholder package would.
    pub(crate) fn create_function(&self, name: &str, runtime: &str, architecture: &str) {
        self.boto3(
            r#"
name, runtime, arch = sys.argv[1:4]
try:
    role = iam.get_role(RoleName='lambda-exec')['Role']['Arn']
except iam.exceptions.NoSuchEntityException:
    role = iam.create_role(RoleName='lambda-exec', AssumeRolePolicyDocument=json.dumps({
        'Version': '2012-10-17',
        'Statement': [{'Effect': 'Allow', 'Principal': {'Service': 'lambda.amazonaws.com'}, 'Action': 'sts:AssumeRole'}],
    }))['Role']['Arn']
buf = io.BytesIO()
with zipfile.ZipFile(buf, 'w') as z:
    z.writestr('placeholder.py', 'def handler(event, context):\n    return None\n')
lam.create_function(FunctionName=name, Runtime=runtime, Role=role, Handler='app.handler',
                    Architectures=[arch], Code={'ZipFile': buf.getvalue()})
"#,
            &[name, runtime, architecture],
        );
    }

    /// The function's configuration (GetFunction's `Configuration`).
    pub(crate) fn function(&self, name: &str) -> serde_json::Value {
        self.boto3(
            "print(json.dumps(lam.get_function(FunctionName=sys.argv[1])['Configuration'], default=str))",
            &[name],
        )
    }

    /// Creates an IAM user allowed only `actions`, turns on moto's IAM
    /// enforcement after `free` more requests, and returns the user's
    /// access key id and secret. Needs a moto from
    /// [`Moto::start_unrecorded`]. (moto 5.2 computes signatures of GET
    /// requests differently from the SDKs, so enforced GETs fail with
    /// SignatureDoesNotMatch: let the reads before the write under test
    /// through with `free`.)
    pub(crate) fn restricted_user(&self, actions: &[&str], free: u32) -> (String, String) {
        let v = self.boto3(
            r#"
import urllib.request
iam.create_user(UserName='deployer')
iam.put_user_policy(UserName='deployer', PolicyName='deploy', PolicyDocument=json.dumps({
    'Version': '2012-10-17',
    'Statement': [{'Effect': 'Allow', 'Action': sys.argv[3:], 'Resource': '*'}],
}))
key = iam.create_access_key(UserName='deployer')['AccessKey']
urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/moto-api/reset-auth', data=sys.argv[2].encode(), method='POST', headers={'Content-Type': 'text/plain'}))
print(json.dumps([key['AccessKeyId'], key['SecretAccessKey']]))
"#,
            &[&[self.endpoint().as_str(), free.to_string().as_str()], actions].concat(),
        );
        (
            v[0].as_str().unwrap().to_string(),
            v[1].as_str().unwrap().to_string(),
        )
    }

    /// Ends [`Moto::restricted_user`]'s enforcement: the next million
    /// requests go through unchecked (to read back state as the test's
    /// admin).
    pub(crate) fn unrestrict(&self) {
        self.boto3(
            "import urllib.request\n\
             urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/moto-api/reset-auth', data=b'1000000', method='POST', headers={'Content-Type': 'text/plain'}))",
            &[&self.endpoint()],
        );
    }

    pub(crate) fn create_bucket(&self, bucket: &str) {
        self.boto3("s3.create_bucket(Bucket=sys.argv[1])", &[bucket]);
    }

    /// Keys in a bucket.
    pub(crate) fn keys(&self, bucket: &str) -> Vec<String> {
        let v = self.boto3(
            "print(json.dumps([o['Key'] for o in s3.list_objects_v2(Bucket=sys.argv[1]).get('Contents', [])]))",
            &[bucket],
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }

    fn recording_path(&self) -> PathBuf {
        self.dir.path().join("recording")
    }

    /// Forgets the requests recorded so far.
    pub(crate) fn reset_recording(&self) {
        std::fs::write(self.recording_path(), "").unwrap();
    }

    /// The requests served since the last reset (bodies are not kept).
    pub(crate) fn requests(&self) -> Vec<Request> {
        let Ok(file) = std::fs::File::open(self.recording_path()) else {
            return Vec::new();
        };
        std::io::BufReader::new(file)
            .lines()
            .map(|l| l.unwrap())
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                let url = v["url"].as_str().unwrap_or_default();
                let path = url
                    .splitn(4, '/')
                    .nth(3)
                    .map(|p| format!("/{}", p.split('?').next().unwrap_or_default()))
                    .unwrap_or_default();
                Request {
                    method: v["method"].as_str().unwrap_or_default().to_string(),
                    path,
                }
            })
            .collect()
    }

    /// The write requests (anything but GET and HEAD) since the last reset.
    pub(crate) fn writes(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_write())
            .collect()
    }
}

/// Removes every AWS setting of the machine from `cmd`, so that only what a
/// test sets counts (config files under `dir`, which do not exist, and no
/// instance metadata lookups).
pub(crate) fn no_aws_env<'a>(cmd: &'a mut Command, dir: &Path) -> &'a mut Command {
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str()
            && k.starts_with("AWS_")
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An endpoint that accepts connections and never answers (a hung proxy):
/// its URL. The listener and the accepted sockets live as long as the
/// test process.
pub(crate) fn silent_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            match conn {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
    });
    format!("http://127.0.0.1:{port}")
}
