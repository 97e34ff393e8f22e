//! TLS as a client (rustls on ring): a broker's own connections to another broker's TLS
//! inter-broker listener, and the CLI's. The server's certificate is checked as librdkafka
//! (OpenSSL) checks it against its CA file: chained to a CA there (WebPKI), or itself one of the
//! certificates there (a self-signed certificate given as its own CA, which WebPKI alone refuses
//! as `CaUsedAsEndEntity`); its host name too unless the caller turns that off (Kafka's
//! `ssl.endpoint.identification.algorithm` empty).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};

use super::tls::Identity;

/// A client configuration trusting the PEM certificates in `trusted` (read from `origin`),
/// presenting `identity` where the server asks for a certificate.
pub fn client_config(
    trusted: &[u8],
    origin: &str,
    identity: Option<Identity>,
    check_name: bool,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let mut pinned = Vec::new();
    for cert in CertificateDer::pem_slice_iter(trusted) {
        let cert = cert.map_err(|e| format!("{origin}: {e}"))?;
        pinned.push(cert.clone());
        // A self-signed server certificate used as its own CA: trusted as pinned below.
        let _ = roots.add(cert);
    }
    if pinned.is_empty() {
        return Err(format!("{origin}: no CERTIFICATE in it"));
    }
    #[allow(deprecated)] // ring: see security::tls
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("{origin}: {e}"))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            inner,
            pinned,
            check_name,
        }));
    let config = match identity {
        Some(Identity { chain, key, origin }) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("{origin}: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct Pinned {
    inner: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
    check_name: bool,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(verified) => Ok(verified),
            // WebPKI checks the name after the chain: this error means the chain is good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
