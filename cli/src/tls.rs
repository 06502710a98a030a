//! TLS for the client (`send`) and the sink: rustls with the ring provider, TLS 1.2 and 1.3.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::util::{CliError, io_reason};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError(format!("{}: {}", path.display(), io_reason(&e))))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            CliError(format!(
                "{}: not a PEM certificate file ({e})",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(CliError(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// A client trusting the public web roots plus, when given, the CAs of a PEM file.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, CliError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|e| {
                CliError(format!(
                    "--ca {}: unusable CA certificate ({e})",
                    path.display()
                ))
            })?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| CliError(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The sink's certificate files in `dir`.
pub struct CertFiles {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl CertFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

fn tls_err(e: impl std::fmt::Display) -> CliError {
    CliError(format!("certificate generation failed: {e}"))
}

/// Writes a file through a temporary name so a reader never sees half of it.
fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<(), CliError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        std::io::Write::write_all(&mut opts.open(&tmp)?, data)?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| CliError(format!("{}: {}", path.display(), io_reason(&e))))
}

/// Generates a CA and a server certificate for localhost, 127.0.0.1 and ::1 into `dir`.
fn generate(files: &CertFiles) -> Result<(), CliError> {
    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "capi sink test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .map_err(tls_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, &issuer).map_err(tls_err)?;

    write_atomic(&files.ca, ca_cert.pem().as_bytes(), false)?;
    write_atomic(&files.key, key.serialize_pem().as_bytes(), true)?;
    write_atomic(&files.cert, cert.pem().as_bytes(), false)?;
    Ok(())
}

fn load_pair(
    files: &CertFiles,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CliError> {
    let chain = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| CliError(format!("{}: {e}", files.key.display())))?;
    Ok((chain, key))
}

/// The sink's server configuration. Certificates already in `dir` (all three files) are
/// reused so that a restarted sink keeps the CA its clients trust; otherwise new ones are made.
pub fn server_config(dir: &Path) -> Result<(Arc<ServerConfig>, CertFiles), CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError(format!("--cert-dir {}: {}", dir.display(), io_reason(&e))))?;
    let files = CertFiles::in_dir(dir);
    let existing = if files.ca.exists() && files.cert.exists() && files.key.exists() {
        load_pair(&files).ok()
    } else {
        None
    };
    let (chain, key) = match existing {
        Some(pair) => pair,
        None => {
            generate(&files)?;
            load_pair(&files)?
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| CliError(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            CliError(format!(
                "--cert-dir {}: certificate and key do not fit ({e})",
                dir.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), files))
}
