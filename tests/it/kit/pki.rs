//! Test certificates (rcgen): a CA, a server certificate for 127.0.0.1 and localhost, client
//! certificates, written as the PEM files a broker and its clients are configured with.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    /// The CA's certificate (PEM), the truststore of whoever trusts it.
    pub pem_file: PathBuf,
}

/// The password of every encrypted key file below (`ssl.key.password`).
pub const KEY_PASSWORD: &str = "key-secret";

/// A certificate and its key, each in a PEM file, and the two together (a broker's keystore);
/// the key and the keystore also with the key encrypted (PKCS#8, [`KEY_PASSWORD`]).
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub keystore_file: PathBuf,
    pub encrypted_key_file: PathBuf,
    pub encrypted_keystore_file: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem_file, cert.pem()).unwrap();
        Ca {
            cert,
            key,
            pem_file,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) with subject CN=`common_name`,
    /// valid now unless `expired`.
    pub fn issue(
        &self,
        dir: &Path,
        file: &str,
        common_name: &str,
        names: &[&str],
        expired: bool,
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let issued = Issued {
            cert_file: dir.join(format!("{file}.pem")),
            key_file: dir.join(format!("{file}-key.pem")),
            keystore_file: dir.join(format!("{file}-keystore.pem")),
            encrypted_key_file: dir.join(format!("{file}-key-encrypted.pem")),
            encrypted_keystore_file: dir.join(format!("{file}-keystore-encrypted.pem")),
        };
        std::fs::write(&issued.cert_file, cert.pem()).unwrap();
        std::fs::write(&issued.key_file, key.serialize_pem()).unwrap();
        std::fs::write(
            &issued.keystore_file,
            format!("{}{}", key.serialize_pem(), cert.pem()),
        )
        .unwrap();
        let encrypted = encrypted(&key);
        std::fs::write(&issued.encrypted_key_file, &encrypted).unwrap();
        std::fs::write(
            &issued.encrypted_keystore_file,
            format!("{encrypted}{}", cert.pem()),
        )
        .unwrap();
        issued
    }

    /// A server certificate for a broker on loopback.
    pub fn server(&self, dir: &Path, file: &str) -> Issued {
        self.issue(dir, file, "localhost", &["localhost", "127.0.0.1"], false)
    }
}

/// `key` as `openssl pkcs8 -topk8 -scrypt` writes it: PKCS#8 encrypted by PBES2 with scrypt
/// (small parameters, for speed) and AES-256-CBC, under [`KEY_PASSWORD`].
fn encrypted(key: &KeyPair) -> String {
    use pkcs8::pkcs5::{pbes2, scrypt};
    let der = key.serialize_der();
    let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).unwrap();
    let salt: [u8; 16] = rand_bytes();
    let iv: [u8; 16] = rand_bytes();
    let cost = scrypt::Params::new(10, 8, 1, 32).unwrap();
    let params = pbes2::Parameters::scrypt_aes256cbc(cost, &salt, &iv).unwrap();
    info.encrypt_with_params(params, KEY_PASSWORD)
        .unwrap()
        .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
        .unwrap()
        .to_string()
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    bytes
}
