//! A throwaway test CA and a server certificate for `localhost` and
//! `127.0.0.1`, made with rcgen and written as PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

/// Paths of the generated files plus the CA in DER for rustls clients.
pub struct Tls {
    dir: PathBuf,
    ca_der: CertificateDer<'static>,
}

impl Tls {
    /// Writes into `dir` (created if missing):
    /// - `ca.crt`: the CA certificate;
    /// - `server.crt`: the leaf (SANs `localhost`, `127.0.0.1`) followed by the CA;
    /// - `server.key`: the leaf's ECDSA P-256 key, PKCS#8 PEM;
    /// - `skopeo-certs/ca.crt`: a directory holding only the CA, for
    ///   skopeo's `--dest-cert-dir` / `--src-cert-dir`.
    pub fn generate(dir: &Path) -> Tls {
        Self::generate_for(dir, &["localhost", "127.0.0.1"])
    }

    /// [`Tls::generate`] with the leaf's SANs given (IP addresses or DNS
    /// names).
    pub fn generate_for(dir: &Path, names: &[&str]) -> Tls {
        std::fs::create_dir_all(dir).expect("create TLS dir");

        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A unique name, so a client holding another test CA reports an
        // unknown issuer rather than a bad signature.
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("regproxy test CA {unique}"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("generate server key");
        let mut leaf_params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("server params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.use_authority_key_identifier_extension = true;
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("sign server cert");

        let tls = Tls {
            dir: dir.to_owned(),
            ca_der: ca_cert.der().clone(),
        };
        std::fs::write(tls.ca_cert(), ca_cert.pem()).expect("write ca.crt");
        std::fs::write(
            tls.server_cert(),
            format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        )
        .expect("write server.crt");
        std::fs::write(tls.server_key(), leaf_key.serialize_pem()).expect("write server.key");
        std::fs::create_dir_all(tls.cert_dir_for_skopeo()).expect("create skopeo cert dir");
        std::fs::write(tls.cert_dir_for_skopeo().join("ca.crt"), ca_cert.pem())
            .expect("write skopeo ca.crt");
        tls
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Leaf + CA chain, PEM.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// PKCS#8 PEM.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// A directory holding only `ca.crt`, for skopeo's `--*-cert-dir`.
    pub fn cert_dir_for_skopeo(&self) -> PathBuf {
        self.dir.join("skopeo-certs")
    }

    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// A rustls client (ring provider, TLS 1.2 and 1.3) trusting only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        client_config_trusting(std::slice::from_ref(&self.ca_der))
    }

    /// An HTTPS endpoint at `addr` verified as `localhost` against this CA.
    pub fn endpoint(&self, addr: std::net::SocketAddr) -> super::http::Endpoint {
        super::http::Endpoint::tls(addr, self.client_config())
    }
}

/// A rustls client config (ring provider) trusting exactly `roots`.
pub fn client_config_trusting(roots: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("add root certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    Arc::new(config)
}
