//! TLS for the listeners whose protocol is `SSL` or `SASL_SSL`: the server's certificate chain
//! and key from PEM files (`ssl.keystore.location`, or `ssl.keystore.certificate.chain` and
//! `ssl.keystore.key` in-line), the CAs that client certificates must chain to
//! (`ssl.truststore.location`), `ssl.client.auth`, and the client's principal from its
//! certificate's subject. rustls on ring; no OpenSSL.
//!
//! The files are read again when they change (`Tls::current`, checked at most once a second
//! per shard as connections arrive): a renewed certificate is served without a restart, and a
//! bad file keeps the previous configuration, logged once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::Values;

/// `ssl.client.auth`: whether a client must present a certificate (mutual TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(text: &str) -> Option<ClientAuth> {
        match text.trim() {
            "" | "none" => Some(ClientAuth::None),
            "requested" => Some(ClientAuth::Requested),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }
}

/// A certificate chain and its private key, and where they were read from.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub origin: String,
}

/// Where the server's TLS settings come from.
#[derive(Clone, PartialEq)]
pub struct TlsFiles {
    keystore: Option<PathBuf>,
    /// In-line PEM (`ssl.keystore.certificate.chain`, `ssl.keystore.key`), when no keystore file.
    chain_pem: String,
    key_pem: String,
    /// `ssl.key.password`: decrypts an encrypted PKCS#8 private key.
    key_password: String,
    truststore: Option<PathBuf>,
    client_auth: ClientAuth,
}

/// Debug without the secrets (the in-line key and its password).
impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("keystore", &self.keystore)
            .field("truststore", &self.truststore)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// The broker's `ssl.*` keys, checked: a keystore is needed, and a truststore where client
    /// certificates are asked for.
    pub fn from_config(broker: &Values) -> Result<TlsFiles, String> {
        let path = |key: &str| {
            let text = broker.get(key).trim();
            (!text.is_empty()).then(|| PathBuf::from(text))
        };
        let client_auth = ClientAuth::parse(broker.get("ssl.client.auth")).ok_or_else(|| {
            format!(
                "ssl.client.auth `{}` is not none, requested or required",
                broker.get("ssl.client.auth")
            )
        })?;
        let files = TlsFiles {
            keystore: path("ssl.keystore.location"),
            chain_pem: broker.get("ssl.keystore.certificate.chain").to_string(),
            key_pem: broker.get("ssl.keystore.key").to_string(),
            key_password: broker.get("ssl.key.password").to_string(),
            truststore: path("ssl.truststore.location"),
            client_auth,
        };
        let keystore_type = broker.get("ssl.keystore.type").trim();
        if !keystore_type.eq_ignore_ascii_case("PEM") {
            return Err(format!(
                "ssl.keystore.type `{keystore_type}`: Sluice reads PEM files only \
                 (a private key and its certificate chain)"
            ));
        }
        if files.keystore.is_none() && files.chain_pem.trim().is_empty() {
            return Err(
                "a TLS listener needs ssl.keystore.location (a PEM file with the \
                 private key and the certificate chain)"
                    .into(),
            );
        }
        if files.client_auth != ClientAuth::None && files.truststore.is_none() {
            return Err(
                "ssl.client.auth asks for client certificates: set ssl.truststore.location \
                 (PEM file of the CAs they must chain to)"
                    .into(),
            );
        }
        Ok(files)
    }

    /// The same files with `client_auth` instead of `ssl.client.auth`.
    pub fn with_client_auth(mut self, client_auth: ClientAuth) -> TlsFiles {
        self.client_auth = client_auth;
        self
    }

    /// The node's own certificate chain and private key, read from the keystore.
    pub fn identity(&self) -> Result<Identity, String> {
        let (pem, origin) = match &self.keystore {
            Some(path) => (read(path)?, path.display().to_string()),
            None => (
                format!("{}\n{}", self.key_pem, self.chain_pem).into_bytes(),
                "ssl.keystore.key / ssl.keystore.certificate.chain".to_string(),
            ),
        };
        // The key first: a legacy encrypted key's headers would fail the chain's reading.
        let key = private_key(&pem, &self.key_password, &origin)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{origin}: {e}"))?;
        if chain.is_empty() {
            return Err(format!("{origin}: no CERTIFICATE in it"));
        }
        Ok(Identity { chain, key, origin })
    }

    /// `ssl.truststore.location`, read (PEM), if set.
    pub fn truststore(&self) -> Result<Option<(Vec<u8>, String)>, String> {
        match &self.truststore {
            None => Ok(None),
            Some(path) => Ok(Some((read(path)?, path.display().to_string()))),
        }
    }

    /// Reads the files and builds the server configuration.
    pub fn load(&self) -> Result<Arc<ServerConfig>, String> {
        let Identity { chain, key, origin } = self.identity()?;
        // ring builds with a C compiler alone (aws-lc-rs, rustls' default, wants more); rustls
        // marks its provider deprecated because it lacks the post-quantum key exchange
        // (X25519MLKEM768), which clients then do not get from Sluice.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match (&self.truststore, self.client_auth) {
            (_, ClientAuth::None) | (None, _) => builder.with_no_client_auth(),
            (Some(path), auth) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&read(path)?) {
                    let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
                let verifier = match auth {
                    ClientAuth::Requested => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| format!("{}: {e}", path.display()))?,
                )
            }
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("{origin}: {e}"))?;
        Ok(Arc::new(config))
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        self.keystore
            .iter()
            .chain(&self.truststore)
            .map(|p| p.as_path())
    }
}

/// The private key in `pem`: a plain one (PKCS#8, PKCS#1 or SEC1), or PKCS#8 encrypted with
/// `password` (`ssl.key.password`), the one encrypted form Kafka reads from a PEM keystore
/// (PBES2: PBKDF2 or scrypt, with AES-CBC or 3DES, as `openssl pkcs8 -topk8` writes).
pub fn private_key(
    pem: &[u8],
    password: &str,
    origin: &str,
) -> Result<PrivateKeyDer<'static>, String> {
    const BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
    let text = String::from_utf8_lossy(pem);
    if let Some(start) = text.find(BEGIN) {
        let end = text[start..]
            .find(END)
            .map(|at| start + at + END.len())
            .ok_or_else(|| format!("{origin}: the ENCRYPTED PRIVATE KEY has no END line"))?;
        if password.is_empty() {
            return Err(format!(
                "{origin}: the private key is encrypted: set ssl.key.password"
            ));
        }
        let (_, document) = pkcs8::SecretDocument::from_pem(&text[start..end])
            .map_err(|e| format!("{origin}: the encrypted private key: {e}"))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes())
            .map_err(|e| format!("{origin}: the encrypted private key: {e}"))?;
        let plain = info.decrypt(password).map_err(|e| {
            format!(
                "{origin}: the private key cannot be decrypted with ssl.key.password \
                 (a wrong password, or a cipher other than PBES2's AES-CBC or 3DES: {e})"
            )
        })?;
        return Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()));
    }
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(format!(
            "{origin}: the private key is encrypted in OpenSSL's legacy form (Proc-Type: \
             4,ENCRYPTED), which Kafka does not read either: convert it with `openssl pkcs8 \
             -topk8 -v2 aes-256-cbc` and set ssl.key.password"
        ));
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("{origin}: no usable private key: {e}"))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// How often a shard looks at the files' modification times, at most.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// A shard's TLS server configuration, reloaded when its files change.
#[derive(Clone, Debug)]
pub struct Tls {
    files: TlsFiles,
    config: Arc<ServerConfig>,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

impl Tls {
    pub fn new(files: TlsFiles) -> Result<Tls, String> {
        let config = files.load()?;
        let stamps = stamps(&files);
        Ok(Tls {
            files,
            config,
            stamps,
            checked: Instant::now(),
        })
    }

    /// The configuration for a new connection: read again from the files if they changed.
    pub fn current(&mut self) -> Arc<ServerConfig> {
        if self.checked.elapsed() >= RELOAD_CHECK {
            self.checked = Instant::now();
            let now = stamps(&self.files);
            if now != self.stamps {
                self.stamps = now;
                match self.files.load() {
                    Ok(config) => {
                        tracing::info!("TLS certificates reloaded: their files changed");
                        self.config = config;
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "TLS certificates changed but cannot be loaded: still serving the previous ones"
                    ),
                }
            }
        }
        self.config.clone()
    }
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    files
        .paths()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// A client certificate's subject, the distinguished name in RFC 2253 order (most specific
/// first, `CN=alice,OU=eng,O=example`), as Kafka names it (`ssl.principal.mapping.rules` then
/// makes it the principal's name; `DEFAULT` keeps it).
pub fn subject_of(certificate: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            let parts: Vec<String> = rdn
                .iter()
                .map(|attribute| {
                    let key = x509_parser::objects::oid2abbrev(
                        attribute.attr_type(),
                        x509_parser::objects::oid_registry(),
                    )
                    .map(str::to_string)
                    .unwrap_or_else(|_| attribute.attr_type().to_id_string());
                    let value = attribute.as_str().unwrap_or("?");
                    format!("{key}={}", escape_dn(value))
                })
                .collect();
            parts.join("+")
        })
        .collect();
    let name: Vec<String> = rdns.into_iter().rev().collect();
    Some(name.join(","))
}

/// RFC 2253's escapes for an attribute value.
fn escape_dn(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_auth_words() {
        assert_eq!(ClientAuth::parse(""), Some(ClientAuth::None));
        assert_eq!(ClientAuth::parse("required"), Some(ClientAuth::Required));
        assert_eq!(ClientAuth::parse("yes"), None);
    }

    #[test]
    fn a_certificate_subject_is_kafkas_principal() {
        let mut params = rcgen::CertificateParams::new(vec!["client".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_of(cert.der()).as_deref(),
            Some("CN=alice,O=Example\\, Inc")
        );
    }

    /// `key`'s PKCS#8 encrypted with `password` (PBKDF2-SHA256, AES-256-CBC), as PEM.
    pub(crate) fn encrypted_pem(key: &rcgen::KeyPair, password: &str) -> String {
        let der = key.serialize_der();
        let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).unwrap();
        let params =
            pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, b"salt-salt", &[7; 16])
                .unwrap();
        info.encrypt_with_params(params, password)
            .unwrap()
            .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
            .unwrap()
            .to_string()
    }

    #[test]
    fn an_encrypted_key_opens_with_its_password_alone() {
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = encrypted_pem(&key, "s3cret");
        let opened = private_key(pem.as_bytes(), "s3cret", "key.pem").unwrap();
        assert_eq!(opened.secret_der(), key.serialize_der().as_slice());

        let wrong = private_key(pem.as_bytes(), "guess", "key.pem").unwrap_err();
        assert!(
            wrong.contains("cannot be decrypted with ssl.key.password"),
            "{wrong}"
        );
        let unset = private_key(pem.as_bytes(), "", "key.pem").unwrap_err();
        assert!(unset.contains("set ssl.key.password"), "{unset}");
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                      DEK-Info: AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let legacy = private_key(legacy.as_bytes(), "s3cret", "key.pem").unwrap_err();
        assert!(legacy.contains("openssl pkcs8 -topk8"), "{legacy}");
        // A plain key ignores the password, as Kafka does.
        let plain = private_key(key.serialize_pem().as_bytes(), "s3cret", "key.pem").unwrap();
        assert_eq!(plain.secret_der(), key.serialize_der().as_slice());
    }

    #[test]
    fn a_keystore_with_an_encrypted_key_serves_tls() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let keystore = dir.path().join("broker.pem");
        std::fs::write(
            &keystore,
            format!("{}{}", encrypted_pem(&key, "pw"), cert.pem()),
        )
        .unwrap();
        let mut broker = Values::new(&crate::config::BROKER_KEYS);
        broker
            .set("ssl.keystore.location", keystore.to_str().unwrap())
            .unwrap();
        let refused = TlsFiles::from_config(&broker).unwrap().load().unwrap_err();
        assert!(refused.contains("set ssl.key.password"), "{refused}");
        broker.set("ssl.key.password", "pw").unwrap();
        TlsFiles::from_config(&broker).unwrap().load().unwrap();
    }
}
