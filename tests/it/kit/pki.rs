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

/// A certificate and its key, each in a PEM file, and the two together (a broker's keystore).
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub keystore_file: PathBuf,
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
        };
        std::fs::write(&issued.cert_file, cert.pem()).unwrap();
        std::fs::write(&issued.key_file, key.serialize_pem()).unwrap();
        std::fs::write(
            &issued.keystore_file,
            format!("{}{}", key.serialize_pem(), cert.pem()),
        )
        .unwrap();
        issued
    }

    /// A server certificate for a broker on loopback.
    pub fn server(&self, dir: &Path, file: &str) -> Issued {
        self.issue(dir, file, "localhost", &["localhost", "127.0.0.1"], false)
    }
}
