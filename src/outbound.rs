//! What baton reaches out to during a call: external bots over WebSockets (`ws://`,
//! `wss://`) and customer data over HTTP (`http://`, `https://`). Both trust the public web
//! roots and the certificate authorities the config adds (`trusted_ca`), through one TLS
//! setup built at start-up.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Largest PEM file read as a trusted CA: a bundle of every public root is about 250 KB.
const MAX_PEM_BYTES: u64 = 4 << 20;

/// The clients a call uses to reach other services, shared by every call.
#[derive(Clone)]
pub struct Outbound {
    /// TLS for `wss://` bots.
    pub tls: Arc<ClientConfig>,
    /// HTTP for customer data, with the same TLS.
    http: reqwest::Client,
}

/// Why the outbound clients could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("trusted_ca {file}: {message}")]
    Ca { file: PathBuf, message: String },
    #[error("HTTP client: {0}")]
    Http(String),
}

impl Outbound {
    /// Trusts the public web roots and every certificate in the `trusted_ca` files.
    pub fn new(trusted_ca: &[PathBuf]) -> Result<Outbound, OutboundError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for file in trusted_ca {
            for cert in read_certificates(file)? {
                roots.add(cert).map_err(|e| OutboundError::Ca {
                    file: file.clone(),
                    message: format!("not a usable CA certificate: {e}"),
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OutboundError::Http(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            // A CRM answers a bot in the middle of a call: a redirect elsewhere is a
            // misconfiguration to report, not to follow around the network.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OutboundError::Http(e.to_string()))?;
        Ok(Outbound {
            tls: Arc::new(tls),
            http,
        })
    }

    /// The shared HTTP client, for requests [`Outbound::get`] does not cover (webhooks). It
    /// follows no redirects.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Outbound {
    /// GETs `url` and returns its body: only a 2xx answer, only within `timeout` for the
    /// whole exchange, and at most `max_bytes` whatever the headers claim. The error is one
    /// line for a log, a bot or the call's context: never the body, nor the URL.
    pub async fn get(
        &self,
        url: &str,
        accept: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Vec<u8>, String> {
        tokio::time::timeout(timeout, self.get_unbounded(url, accept, max_bytes))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                ))
            })
    }

    async fn get_unbounded(
        &self,
        url: &str,
        accept: &str,
        max_bytes: usize,
    ) -> Result<Vec<u8>, String> {
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| {
                if e.is_builder() {
                    format!("not a usable URL: {}", root_cause(&e))
                } else {
                    format!("could not reach the server: {}", root_cause(&e))
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the server answered {status}"));
        }
        let too_large = || format!("the answer is over {max_bytes} bytes");
        if response
            .content_length()
            .is_some_and(|n| n > max_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("the answer broke off: {}", root_cause(&e)))?
        {
            // Announced or not, the limit holds for what actually arrives.
            if body.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The innermost reason, without the URL: "Connection refused (os error 111)", or what
/// TLS found wrong with a certificate.
pub(crate) fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string().replace(['\r', '\n'], " ")
}

fn read_certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, OutboundError> {
    let fail = |message: String| OutboundError::Ca {
        file: file.to_owned(),
        message,
    };
    let size = std::fs::metadata(file)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if size > MAX_PEM_BYTES {
        return Err(fail(format!("{size} bytes; at most {MAX_PEM_BYTES}")));
    }
    let pem = std::fs::read(file).map_err(|e| fail(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no CERTIFICATE block in the file".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_files_are_named() {
        let dir = std::env::temp_dir().join(format!("baton-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let garbled = dir.join("garbled.pem");
        std::fs::write(
            &garbled,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for (file, expected) in [
            (dir.join("missing.pem"), "No such file"),
            (empty, "no CERTIFICATE block"),
            (garbled, "not a usable CA certificate"),
        ] {
            let e = Outbound::new(std::slice::from_ref(&file))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(&file.display().to_string()), "{e}");
            assert!(e.contains(expected), "{e}");
        }
        assert!(Outbound::new(&[]).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
