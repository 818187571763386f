//! Who a remote object is trusted from: ed25519 signatures, as Nix binary
//! caches sign store paths.
//!
//! A dependency tree fetched under its key cannot be checked against the
//! inputs that made the key without installing it again, and an entry's
//! compressed bytes cannot be checked against what this lbuild would write
//! without compressing it again. So a remote object is used because a key
//! the reader trusts signed it: writers append a signature over the
//! statement `(object name, BLAKE3 of the object's body)` to the object
//! ([`Trust::seal`]); readers accept an object only when a key in
//! `[cache] trusted_keys` / `LBUILD_TRUSTED_KEYS` signed it under that very
//! name ([`Trust::open`]), so a valid object replayed under another key
//! fails. `[cache] trust = "bucket"` (`LBUILD_REMOTE_TRUST=bucket`) reads
//! unsigned objects too: whoever can write the bucket decides what the
//! zips contain.
//!
//! Keys are written like Nix's: `NAME:BASE64(public key)` and
//! `NAME:BASE64(seed ‖ public key)` for the secret one. A reader never needs
//! the secret key. This module owns keys, the object trailer and the
//! checks; it does not fetch (the transport) nor decide what a verified
//! object means (the stages).

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::cache::Hash;

/// Whether unsigned objects are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrustMode {
    /// Only objects signed by a trusted key (the default).
    #[default]
    Signed,
    /// Anything the bucket holds that passes the content checks.
    Bucket,
}

impl TrustMode {
    pub fn parse(s: &str) -> Option<TrustMode> {
        match s.trim() {
            "signed" => Some(TrustMode::Signed),
            "bucket" => Some(TrustMode::Bucket),
            _ => None,
        }
    }
}

/// A public key a reader trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    pub name: String,
    key: VerifyingKey,
}

/// The key a writer signs with.
#[derive(Clone)]
pub(crate) struct SecretKey {
    pub name: String,
    key: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.name)
    }
}

/// What a build trusts and signs with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trust {
    pub mode: TrustMode,
    pub keys: Vec<PublicKey>,
    pub signer: Option<SecretKey>,
}

/// Why an object was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// No signature trailer (and trust is `signed`).
    Unsigned,
    /// Signed by a key this reader does not trust.
    UntrustedKey(String),
    /// A trusted key's name, but the signature does not verify for this
    /// object name and body.
    BadSignature(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Unsigned => write!(f, "is not signed"),
            Rejection::UntrustedKey(k) => write!(
                f,
                "is signed by {}, a key not in [cache] trusted_keys / LBUILD_TRUSTED_KEYS",
                crate::sanitize::escape_controls(k)
            ),
            Rejection::BadSignature(k) => write!(
                f,
                "carries a signature by {} that does not match its name and bytes",
                crate::sanitize::escape_controls(k)
            ),
        }
    }
}

const TRAILER_TAG: &[u8] = b"lbuild-sig 1 ";
/// A trailer is one short line; anything longer is not one.
const TRAILER_MAX: usize = 512;

/// The bytes a signature covers: the object's name and its body's digest.
fn statement(name: &str, body: &Hash) -> Vec<u8> {
    format!("lbuild remote object 1\n{name}\n{}\n", body.to_hex()).into_bytes()
}

/// A key name: what `NAME:` may be (no `:`, no space or control).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@+".contains(&b))
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Parses `NAME:BASE64` into its name and key bytes of length `len`.
fn split_key(s: &str, len: usize, what: &str) -> Result<(String, Vec<u8>), String> {
    let s = s.trim();
    let (name, key) = s.split_once(':').ok_or_else(|| {
        format!(
            "{what} {:?} is not NAME:BASE64",
            crate::sanitize::escape_controls(s)
        )
    })?;
    if !valid_name(name) {
        return Err(format!(
            "{what} name {:?} may hold only letters, digits and -_.@+",
            crate::sanitize::escape_controls(name)
        ));
    }
    let bytes = b64()
        .decode(key.trim())
        .map_err(|_| format!("{what} {name}: the part after ':' is not base64"))?;
    if bytes.len() != len {
        return Err(format!(
            "{what} {name}: {} bytes where an ed25519 key has {len}",
            bytes.len()
        ));
    }
    Ok((name.to_string(), bytes))
}

impl PublicKey {
    /// `NAME:BASE64(32 bytes)`.
    pub(crate) fn parse(s: &str) -> Result<PublicKey, String> {
        let (name, bytes) = split_key(s, 32, "public key")?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| "length".to_string())?;
        let key = VerifyingKey::from_bytes(&arr)
            .map_err(|_| format!("public key {name}: not a valid ed25519 point"))?;
        Ok(PublicKey { name, key })
    }

    pub(crate) fn to_text(&self) -> String {
        format!("{}:{}", self.name, b64().encode(self.key.as_bytes()))
    }
}

impl SecretKey {
    /// `NAME:BASE64(seed ‖ public key)` (64 bytes, as Nix writes them).
    pub(crate) fn parse(s: &str) -> Result<SecretKey, String> {
        let (name, bytes) = split_key(s, 64, "secret key")?;
        let seed: [u8; 32] = bytes[..32].try_into().map_err(|_| "length".to_string())?;
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes()[..] != bytes[32..] {
            return Err(format!(
                "secret key {name}: its second half is not the public key of its first"
            ));
        }
        Ok(SecretKey { name, key })
    }

    pub(crate) fn to_text(&self) -> String {
        let mut bytes = self.key.to_bytes().to_vec();
        bytes.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}:{}", self.name, b64().encode(bytes))
    }

    pub(crate) fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }
}

/// A new key pair named `name` (the seed from the OS's random source).
pub(crate) fn keygen(name: &str) -> Result<SecretKey, String> {
    if !valid_name(name) {
        return Err(format!(
            "key name {:?} may hold only letters, digits and -_.@+ (e.g. ci-2026)",
            crate::sanitize::escape_controls(name)
        ));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no random source: {e}"))?;
    Ok(SecretKey {
        name: name.to_string(),
        key: SigningKey::from_bytes(&seed),
    })
}

/// `lbuild cache keygen NAME [--out FILE]`: a new key pair; the secret
/// key goes to a new file (mode 0600, never overwritten), the public key
/// is printed.
pub(crate) fn keygen_command(
    name: &str,
    out: Option<std::path::PathBuf>,
    reporter: &crate::report::Reporter,
) -> crate::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let sk = keygen(name).map_err(|message| crate::Error::Input {
        message,
        hint: "name the key after who signs with it and when, e.g. `lbuild cache keygen ci-2026`"
            .into(),
    })?;
    let path = out.unwrap_or_else(|| std::path::PathBuf::from(format!("{name}.secret")));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| crate::Error::Input {
            message: format!("cannot create the secret key file {}: {e}", path.display()),
            hint: "name a new file with --out (an existing one is never overwritten)".into(),
        })?;
    f.write_all(format!("{}\n", sk.to_text()).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(crate::Error::io("cannot write", &path))?;
    let public = sk.public().to_text();
    if reporter.mode == crate::report::Mode::Json {
        reporter.json(&serde_json::json!({"public_key": public, "secret_key_file": path}));
    } else {
        reporter.result(&public);
        reporter.info(format!(
            "secret key written to {}: give it to the writers only (LBUILD_SIGNING_KEY), the public key above to every reader ([cache] trusted_keys or LBUILD_TRUSTED_KEYS)",
            path.display()
        ));
    }
    Ok(())
}

/// Splits an object into its body and its trailer line (without the tag),
/// if it has one.
fn split_trailer(object: &[u8]) -> (&[u8], Option<&[u8]>) {
    let Some(rest) = object.strip_suffix(b"\n") else {
        return (object, None);
    };
    let from = rest.len().saturating_sub(TRAILER_MAX);
    let Some(nl) = rest[from..].iter().rposition(|&b| b == b'\n') else {
        return (object, None);
    };
    let nl = from + nl;
    match rest[nl + 1..].strip_prefix(TRAILER_TAG) {
        Some(line) => (&rest[..nl], Some(line)),
        None => (object, None),
    }
}

/// How many bytes of an object's end [`cut_trailer`] reads.
pub(crate) const TAIL: usize = TRAILER_MAX + 2;

impl Trust {
    /// The object to upload for `body` under `name`: the body, then (with
    /// a signing key) one trailer line `lbuild-sig 1 KEYNAME BASE64SIG`.
    pub(crate) fn seal(&self, name: &str, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 160);
        out.extend_from_slice(body);
        if let Some(t) = self.trailer(name, &blake3::hash(body)) {
            out.extend_from_slice(&t);
        }
        out
    }

    /// The trailer for a body with digest `body` (None without a key).
    pub(crate) fn trailer(&self, name: &str, body: &Hash) -> Option<Vec<u8>> {
        let s = self.signer.as_ref()?;
        let sig = s.key.sign(&statement(name, body));
        let mut t = b"\n".to_vec();
        t.extend_from_slice(TRAILER_TAG);
        t.extend_from_slice(format!("{} {}\n", s.name, b64().encode(sig.to_bytes())).as_bytes());
        Some(t)
    }

    /// The body of `object` fetched as `name`, if this reader accepts it.
    pub(crate) fn open<'a>(&self, name: &str, object: &'a [u8]) -> Result<&'a [u8], Rejection> {
        let (body, line) = split_trailer(object);
        self.check(name, &blake3::hash(body), line)?;
        Ok(body)
    }

    /// Checks a trailer line (None: no trailer) for a body's digest.
    pub(crate) fn check(
        &self,
        name: &str,
        body: &Hash,
        line: Option<&[u8]>,
    ) -> Result<(), Rejection> {
        let Some(line) = line else {
            return match self.mode {
                TrustMode::Bucket => Ok(()),
                TrustMode::Signed => Err(Rejection::Unsigned),
            };
        };
        let text = String::from_utf8_lossy(line);
        let (key_name, sig) = text.trim_end().split_once(' ').unwrap_or((&text, ""));
        let Some(key) = self.keys.iter().find(|k| k.name == key_name) else {
            return match self.mode {
                TrustMode::Bucket => Ok(()),
                TrustMode::Signed => Err(Rejection::UntrustedKey(key_name.to_string())),
            };
        };
        let bad = || Rejection::BadSignature(key_name.to_string());
        let bytes: [u8; 64] = b64()
            .decode(sig)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        // A trusted key's name with a signature that fails is refused in
        // either mode: someone used the name of a key they do not hold.
        key.key
            .verify(&statement(name, body), &Signature::from_bytes(&bytes))
            .map_err(|_| bad())
    }

    /// Checks a file already on disk whose body is its first `body_len`
    /// bytes (its trailer, `line`, was read off its end).
    pub(crate) fn check_file(
        &self,
        name: &str,
        file: &mut std::fs::File,
        body_len: u64,
        line: Option<&[u8]>,
    ) -> std::io::Result<Result<(), Rejection>> {
        use std::io::{Read, Seek};
        file.rewind()?;
        let mut h = blake3::Hasher::new();
        h.update_reader(file.take(body_len))?;
        Ok(self.check(name, &h.finalize(), line))
    }
}

/// Reads a trailer off the end of `file` (a fetched object), truncates the
/// file to its body and returns the trailer line (without its tag), or
/// None when the object has none.
pub(crate) fn cut_trailer(file: &mut std::fs::File) -> std::io::Result<(u64, Option<Vec<u8>>)> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    let n = (TAIL as u64).min(len);
    file.seek(SeekFrom::Start(len - n))?;
    let mut tail = vec![0u8; n as usize];
    file.read_exact(&mut tail)?;
    let (body, line) = split_trailer(&tail);
    let line = line.map(<[u8]>::to_vec);
    let cut = (tail.len() - body.len()) as u64;
    if line.is_some() {
        file.set_len(len - cut)?;
    }
    file.rewind()?;
    Ok((len - if line.is_some() { cut } else { 0 }, line))
}

/// The trust a build has from its configuration: the mode, the trusted
/// public keys (manifest's, then the environment's) and the signing key
/// (`LBUILD_SIGNING_KEY`: a file holding the key, or the key itself).
pub(crate) fn from_config(
    mode: TrustMode,
    trusted: &[String],
    signing: Option<&str>,
) -> Result<Trust, crate::Error> {
    let mut keys = Vec::new();
    for k in trusted.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if k.is_empty() {
            continue;
        }
        keys.push(PublicKey::parse(k).map_err(|message| crate::Error::Input {
            message: format!("trusted key: {message}"),
            hint: "list keys as `lbuild cache keygen` prints them: NAME:BASE64 (LBUILD_TRUSTED_KEYS takes them comma-separated)".into(),
        })?);
    }
    let signer = match signing.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(v) => {
            let text = if v.contains(':') && !std::path::Path::new(v).exists() {
                v.to_string()
            } else {
                fs_err::read_to_string(v).map_err(|e| crate::Error::Input {
                    message: format!(
                        "LBUILD_SIGNING_KEY names {}, which cannot be read: {e}",
                        crate::sanitize::escape_controls(v)
                    ),
                    hint: "set it to the file `lbuild cache keygen` wrote, or to the key itself"
                        .into(),
                })?
            };
            Some(
                SecretKey::parse(&text).map_err(|message| crate::Error::Input {
                    message: format!("LBUILD_SIGNING_KEY: {message}"),
                    hint: "make a key pair with `lbuild cache keygen NAME --out FILE`".into(),
                })?,
            )
        }
    };
    Ok(Trust { mode, keys, signer })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (Trust, Trust) {
        let sk = keygen(name).unwrap();
        let reader = Trust {
            mode: TrustMode::Signed,
            keys: vec![PublicKey::parse(&sk.public().to_text()).unwrap()],
            signer: None,
        };
        let writer = Trust {
            signer: Some(SecretKey::parse(&sk.to_text()).unwrap()),
            ..Trust::default()
        };
        (writer, reader)
    }

    #[test]
    fn a_signed_object_opens_only_under_its_name_with_its_bytes_by_a_trusted_key() {
        let (writer, reader) = pair("ci");
        let obj = writer.seal("deps/aa.json", b"body\nwith lines\n");
        assert_eq!(
            reader.open("deps/aa.json", &obj).unwrap(),
            b"body\nwith lines\n"
        );
        // Replayed under another name.
        assert!(matches!(
            reader.open("deps/bb.json", &obj),
            Err(Rejection::BadSignature(_))
        ));
        // One byte of the body changed.
        let mut t = obj.clone();
        t[0] ^= 1;
        assert!(reader.open("deps/aa.json", &t).is_err());
        // Unsigned, or by another key.
        assert_eq!(
            reader.open("deps/aa.json", b"body"),
            Err(Rejection::Unsigned)
        );
        let (other, _) = pair("other");
        assert_eq!(
            reader.open("deps/aa.json", &other.seal("deps/aa.json", b"x")),
            Err(Rejection::UntrustedKey("other".into()))
        );
        // A forger using the trusted key's name fails even in bucket mode.
        let (forger, _) = pair("ci");
        let bucket = Trust {
            mode: TrustMode::Bucket,
            ..reader.clone()
        };
        assert!(
            bucket
                .open("deps/aa.json", &forger.seal("deps/aa.json", b"x"))
                .is_err()
        );
        assert_eq!(bucket.open("deps/aa.json", b"plain").unwrap(), b"plain");
    }

    #[test]
    fn keys_round_trip_and_bad_ones_say_why() {
        let sk = keygen("ci-2026").unwrap();
        assert_eq!(
            SecretKey::parse(&sk.to_text()).unwrap().to_text(),
            sk.to_text()
        );
        let pk = sk.public().to_text();
        assert!(pk.starts_with("ci-2026:"));
        assert_eq!(PublicKey::parse(&pk).unwrap().to_text(), pk);
        assert!(
            PublicKey::parse("nocolon")
                .unwrap_err()
                .contains("NAME:BASE64")
        );
        assert!(PublicKey::parse("a:AAAA").unwrap_err().contains("bytes"));
        assert!(keygen("bad name").is_err());
        // A secret key whose halves do not belong together.
        let mut other = sk.to_text();
        let other_pub = keygen("x").unwrap().public().to_text();
        other.truncate(other.find(':').unwrap() + 1);
        let (_, mine) = split_key(&sk.to_text(), 64, "k").unwrap();
        let (_, theirs) = split_key(&other_pub, 32, "k").unwrap();
        let mut mixed = mine[..32].to_vec();
        mixed.extend_from_slice(&theirs);
        other.push_str(&b64().encode(mixed));
        assert!(SecretKey::parse(&other).is_err());
    }

    #[test]
    fn the_trailer_is_cut_off_a_file_and_checked_there() {
        let (writer, reader) = pair("ci");
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let obj = writer.seal("entries/x.zip", &body);
        let mut f = tempfile::tempfile().unwrap();
        use std::io::{Read, Seek, Write};
        f.write_all(&obj).unwrap();
        let (len, line) = cut_trailer(&mut f).unwrap();
        assert_eq!(len, body.len() as u64);
        assert!(
            reader
                .check_file("entries/x.zip", &mut f, len, line.as_deref())
                .unwrap()
                .is_ok()
        );
        let mut back = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut back).unwrap();
        assert!(back == body, "the body, cut where its trailer began");
        // An object without a trailer is left whole.
        let mut g = tempfile::tempfile().unwrap();
        g.write_all(&body).unwrap();
        assert_eq!(cut_trailer(&mut g).unwrap(), (body.len() as u64, None));
    }
}
