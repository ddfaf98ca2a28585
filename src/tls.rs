//! TLS client settings for the connections sinkhole opens itself (the syslog collector, the
//! Logs Ingestion API): which certificate authorities are trusted, read from PEM files, and
//! the client certificate when one is presented.
//!
//! Errors are `PATH: reason`; the caller adds the config key.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WantsClientCert;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ConfigBuilder, RootCertStore};

/// The public web's CAs (Mozilla's list, built in), as a browser trusts them.
pub fn public_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// Adds every certificate in the PEM file `path` to `roots`.
pub fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), String> {
    for certificate in read_pem(path, parse_certificates)? {
        roots
            .add(certificate)
            .map_err(|error| format!("{}: not a usable CA certificate: {error}", path.display()))?;
    }
    Ok(())
}

/// A client that trusts `roots`, with TLS 1.2 and 1.3 and the ring provider; the caller says
/// whether it presents a certificate.
pub fn builder(
    roots: RootCertStore,
) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
    Ok(builder.with_root_certificates(roots))
}

/// A client that trusts the public CAs and those in `ca_file`, without a client certificate.
pub fn public_client(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = public_roots();
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path)?;
    }
    Ok(Arc::new(builder(roots)?.with_no_client_auth()))
}

/// Reads the PEM file `path` and parses it; errors name the path.
pub fn read_pem<T>(path: &Path, parse: fn(&[u8]) -> Result<T, String>) -> Result<T, String> {
    let reason = |why: String| format!("{}: {why}", path.display());
    let text = std::fs::read(path).map_err(|error| reason(format!("cannot read: {error}")))?;
    parse(&text).map_err(reason)
}

/// Every certificate in PEM text; there must be one at least.
pub fn parse_certificates(text: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("not PEM: {error}"))?;
    if certificates.is_empty() {
        return Err("holds no PEM certificate".to_owned());
    }
    Ok(certificates)
}

/// The first private key in PEM text: PKCS #8, PKCS #1 (RSA) or SEC1 (EC).
pub fn parse_key(text: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(text).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => "holds no PEM private key".to_owned(),
        error => format!("not PEM: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_roots_are_there() {
        assert!(public_roots().len() > 100);
    }

    #[test]
    fn a_file_without_certificates_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = public_client(Some(&path)).unwrap_err();
        assert_eq!(
            error,
            format!("{}: holds no PEM certificate", path.display())
        );
        let missing = dir.path().join("none.pem");
        let error = public_client(Some(&missing)).unwrap_err();
        assert!(error.starts_with(&format!("{}: cannot read", missing.display())));
    }
}
