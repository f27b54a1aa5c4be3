//! Binding a device's TLS client certificate to its AE-ID (TS-0003 mutual authentication): with
//! `--bind-identity`, the certificate's subject CN (or, without one, its first DNS or URI subject
//! alternative name) is the only `fr` the device may use, so it cannot act as another device.

use m2m_rt::{ConnId, Cx};

/// The identity in the peer's leaf certificate, if the connection is TLS with a client certificate.
pub fn certificate_identity<M>(cx: &Cx<'_, M>, conn: ConnId) -> Option<String> {
    let chain = cx.peer_certificates(conn)?;
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        return Some(cn.to_string());
    }
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::DNSName(n)
        | x509_parser::extensions::GeneralName::URI(n) => Some(n.to_string()),
        _ => None,
    })
}
