//! The handler's environment: the variables Lambda defines for a function
//! (mapped onto this machine's paths), the caller's AWS credentials and
//! configuration, the function's own variables, and nothing else of the
//! host unless `--pass-env` names it. Pure: the host's environment is
//! passed in, so it can be tested without touching the process's own.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The host's variables that carry the caller's AWS identity and
/// configuration (plus every `AWS_ENDPOINT_URL*`).
const AWS_PASSED: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
];

/// Where things are on this machine that are at fixed places on Lambda.
pub(super) struct Places<'a> {
    /// The extracted function code (`/var/task`).
    pub task: &'a Path,
    /// The extracted layers, in order (together, `/opt`).
    pub layers: &'a [PathBuf],
    /// The runtime's own packages (`/var/runtime`).
    pub runtime_dir: &'a Path,
    /// The interpreter, resolved (its prefix stands for `/var/lang`).
    pub python: &'a Path,
}

/// What the function is, as its environment tells it.
pub(super) struct Function<'a> {
    pub name: &'a str,
    pub handler: &'a str,
    pub runtime: &'a str,
    pub memory_mb: u32,
    pub log_stream: &'a str,
    /// The manifest's `environment`, then `--env`: the last one wins.
    pub environment: &'a [(String, String)],
    /// `--pass-env` names: copied from the host when set there.
    pub pass_env: &'a [String],
}

/// The handler's whole environment.
pub(super) fn environment(
    f: &Function,
    places: &Places,
    host: &[(OsString, OsString)],
) -> BTreeMap<OsString, OsString> {
    let get = |name: &str| host.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: OsString| {
        env.insert(OsString::from(k), v);
    };
    let region = get("AWS_REGION")
        .or_else(|| get("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    set("AWS_LAMBDA_FUNCTION_NAME", f.name.into());
    set("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into());
    set(
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        f.memory_mb.to_string().into(),
    );
    set(
        "AWS_LAMBDA_LOG_GROUP_NAME",
        format!("/aws/lambda/{}", f.name).into(),
    );
    set("AWS_LAMBDA_LOG_STREAM_NAME", f.log_stream.into());
    set("AWS_REGION", region.clone());
    set("AWS_DEFAULT_REGION", region);
    set(
        "AWS_EXECUTION_ENV",
        format!("AWS_Lambda_{}", f.runtime).into(),
    );
    set("_HANDLER", f.handler.into());
    set("LAMBDA_TASK_ROOT", places.task.into());
    set("LAMBDA_RUNTIME_DIR", places.runtime_dir.into());
    set("TZ", ":UTC".into());
    set("LANG", "en_US.UTF-8".into());
    // Lambda: /var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin
    let lang = places
        .python
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/usr"));
    let mut path = vec![lang.join("bin")];
    path.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
    path.extend(places.layers.iter().map(|l| l.join("bin")));
    set("PATH", join(path));
    // Lambda: /var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:
    // /var/task:/var/task/lib:/opt/lib
    let mut lib = vec![lang.join("lib")];
    lib.extend(["/lib64", "/usr/lib64"].map(PathBuf::from));
    for dir in [places.runtime_dir, places.task] {
        lib.push(dir.to_path_buf());
        lib.push(dir.join("lib"));
    }
    lib.extend(places.layers.iter().map(|l| l.join("lib")));
    set("LD_LIBRARY_PATH", join(lib));
    set("PYTHONPATH", places.runtime_dir.into());

    // The execution role's credentials on Lambda; the caller's here.
    for (k, v) in host {
        let passed = k
            .to_str()
            .is_some_and(|k| AWS_PASSED.contains(&k) || k.starts_with("AWS_ENDPOINT_URL"));
        if passed {
            env.insert(k.clone(), v.clone());
        }
    }
    // Lambda has no HOME: the caller's default files, found through it,
    // are named explicitly so a profile still resolves.
    if let Some(home) = get("HOME").filter(|h| !h.is_empty()) {
        for (var, file) in [
            ("AWS_CONFIG_FILE", "config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        ] {
            let default = Path::new(&home).join(".aws").join(file);
            if !env.contains_key(OsStr::new(var)) && default.is_file() {
                env.insert(var.into(), default.into());
            }
        }
    }
    for name in f.pass_env {
        if let Some(v) = get(name) {
            env.insert(name.into(), v);
        }
    }
    for (k, v) in f.environment {
        env.insert(k.into(), v.into());
    }
    env
}

fn join(paths: Vec<PathBuf>) -> OsString {
    // A directory whose name holds ':' cannot be in such a list: left out.
    let usable = paths
        .into_iter()
        .filter(|p| !p.as_os_str().as_encoded_bytes().contains(&b':'));
    std::env::join_paths(usable).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    fn env_of(host: &[(OsString, OsString)], pass: &[String]) -> BTreeMap<String, String> {
        let f = Function {
            name: "orders",
            handler: "app.handler",
            runtime: "python3.12",
            memory_mb: 256,
            log_stream: "s",
            environment: &[("STAGE".into(), "dev".into())],
            pass_env: pass,
        };
        let layers = [PathBuf::from("/s/layer1")];
        let places = Places {
            task: Path::new("/s/task"),
            layers: &layers,
            runtime_dir: Path::new("/s/rt"),
            python: Path::new("/py/bin/python3.12"),
        };
        environment(&f, &places, host)
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect()
    }

    #[test]
    fn lambdas_variables_and_nothing_else_of_the_host() {
        let h = host(&[
            ("HOME", "/nonexistent-home"),
            ("SECRET", "x"),
            ("PATH", "/home/me/bin"),
            ("AWS_PROFILE", "dev"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_CA_BUNDLE", "/ca.pem"),
        ]);
        let env = env_of(&h, &[]);
        let keys: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "AWS_DEFAULT_REGION",
                "AWS_ENDPOINT_URL_S3",
                "AWS_EXECUTION_ENV",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                "AWS_LAMBDA_FUNCTION_NAME",
                "AWS_LAMBDA_FUNCTION_VERSION",
                "AWS_LAMBDA_LOG_GROUP_NAME",
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "AWS_PROFILE",
                "AWS_REGION",
                "LAMBDA_RUNTIME_DIR",
                "LAMBDA_TASK_ROOT",
                "LANG",
                "LD_LIBRARY_PATH",
                "PATH",
                "PYTHONPATH",
                "STAGE",
                "TZ",
                "_HANDLER",
            ]
        );
        assert_eq!(env["AWS_REGION"], "eu-west-1");
        assert_eq!(env["AWS_EXECUTION_ENV"], "AWS_Lambda_python3.12");
        assert_eq!(
            env["PATH"],
            "/py/bin:/usr/local/bin:/usr/bin:/bin:/s/layer1/bin"
        );
        assert_eq!(
            env["LD_LIBRARY_PATH"],
            "/py/lib:/lib64:/usr/lib64:/s/rt:/s/rt/lib:/s/task:/s/task/lib:/s/layer1/lib"
        );
        assert_eq!(env["TZ"], ":UTC");

        // Asked for by name: passed; absent on the host: not invented.
        let env = env_of(&h, &["SECRET".into(), "UNSET".into()]);
        assert_eq!(env["SECRET"], "x");
        assert!(!env.contains_key("UNSET"));
        // The function's own variables win over everything.
        let env = env_of(&host(&[("STAGE", "host")]), &["STAGE".into()]);
        assert_eq!(env["STAGE"], "dev");
        assert_eq!(env["AWS_REGION"], "us-east-1");
    }

    #[test]
    fn the_callers_default_aws_files_are_named_without_home() {
        let home = tempfile::tempdir().unwrap();
        fs_err::create_dir(home.path().join(".aws")).unwrap();
        fs_err::write(home.path().join(".aws/credentials"), "[default]\n").unwrap();
        let h = host(&[("HOME", home.path().to_str().unwrap())]);
        let env = env_of(&h, &[]);
        assert_eq!(
            Path::new(&env["AWS_SHARED_CREDENTIALS_FILE"]),
            home.path().join(".aws/credentials")
        );
        assert!(!env.contains_key("AWS_CONFIG_FILE"), "no such file");
        assert!(!env.contains_key("HOME"));
        // An explicit setting is kept as it is.
        let mut h = h;
        h.push(("AWS_SHARED_CREDENTIALS_FILE".into(), "/elsewhere".into()));
        assert_eq!(env_of(&h, &[])["AWS_SHARED_CREDENTIALS_FILE"], "/elsewhere");
    }
}
