//! Subprotocol selection (RFC 6455 §4.2.2 item 5.4; TS-0020 §6.2.2.7) and the oneM2M policy.
//!
//! The client lists its subprotocols in one or several `Sec-WebSocket-Protocol` headers, in order of
//! preference. A policy sees every offer and picks exactly one (the 101 repeats the client's spelling)
//! or none (TS-0020 requires a subprotocol, so the server then rejects the handshake).

/// Chooses one of the client's offers.
pub trait SubprotocolPolicy {
    /// What the caller learns from the choice (for oneM2M: the serialization).
    type Choice;
    /// Pick one offer; returns its index in `offers` and the choice.
    fn select(&self, offers: &[&str]) -> Option<(usize, Self::Choice)>;
    /// Human-readable list of what is supported, for the rejection body.
    fn supported(&self) -> String;
}

/// The serialization a oneM2M subprotocol carries (TS-0020 table 6.2.2.9-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Serialization {
    /// `oneM2M.json`, in text frames.
    Json,
    /// `oneM2M.xml`, in text frames.
    Xml,
    /// `oneM2M.cbor`, in binary frames.
    Cbor,
}

impl Serialization {
    /// Whether primitives of this serialization travel in text frames (JSON, XML) or binary (CBOR).
    pub fn uses_text_frames(self) -> bool {
        !matches!(self, Self::Cbor)
    }

    /// The suffix in subprotocol names.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Xml => "xml",
            Self::Cbor => "cbor",
        }
    }
}

/// Which generation of names a subprotocol belongs to (ONEM2M.md §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameFamily {
    /// TS-0020 V3 and later: `oneM2M.json|xml|cbor`.
    Plain,
    /// TS-0020 V2 and the IANA registry: `oneM2M.R2.0.json|xml|cbor`.
    R2,
    /// The early draft's single name `oneM2M-pro-v1.0`, which means JSON.
    Draft,
}

/// A recognised oneM2M subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OneM2mSubprotocol {
    pub serialization: Serialization,
    pub family: NameFamily,
}

impl OneM2mSubprotocol {
    /// Recognise a name, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        if lower == "onem2m-pro-v1.0" {
            return Some(Self {
                serialization: Serialization::Json,
                family: NameFamily::Draft,
            });
        }
        let (family, rest) = if let Some(rest) = lower.strip_prefix("onem2m.r2.0.") {
            (NameFamily::R2, rest)
        } else {
            (NameFamily::Plain, lower.strip_prefix("onem2m.")?)
        };
        let serialization = match rest {
            "json" => Serialization::Json,
            "xml" => Serialization::Xml,
            "cbor" => Serialization::Cbor,
            _ => return None,
        };
        Some(Self {
            serialization,
            family,
        })
    }

    /// The canonical spelling of this subprotocol.
    pub fn name(self) -> String {
        match self.family {
            NameFamily::Draft => "oneM2M-pro-v1.0".to_string(),
            NameFamily::Plain => format!("oneM2M.{}", self.serialization.suffix()),
            NameFamily::R2 => format!("oneM2M.R2.0.{}", self.serialization.suffix()),
        }
    }
}

/// The oneM2M policy: the first offer in the client's order whose serialization and name family are
/// enabled. The answer repeats the client's own spelling.
#[derive(Debug, Clone)]
pub struct OneM2mPolicy {
    pub serializations: Vec<Serialization>,
    pub families: Vec<NameFamily>,
}

impl Default for OneM2mPolicy {
    fn default() -> Self {
        Self {
            serializations: vec![Serialization::Json, Serialization::Cbor, Serialization::Xml],
            families: vec![NameFamily::Plain, NameFamily::R2, NameFamily::Draft],
        }
    }
}

impl SubprotocolPolicy for OneM2mPolicy {
    type Choice = OneM2mSubprotocol;

    fn select(&self, offers: &[&str]) -> Option<(usize, OneM2mSubprotocol)> {
        offers.iter().enumerate().find_map(|(i, name)| {
            let p = OneM2mSubprotocol::parse(name)?;
            (self.serializations.contains(&p.serialization) && self.families.contains(&p.family))
                .then_some((i, p))
        })
    }

    fn supported(&self) -> String {
        let mut names = Vec::new();
        for &family in &self.families {
            if family == NameFamily::Draft {
                if self.serializations.contains(&Serialization::Json) {
                    names.push("oneM2M-pro-v1.0".to_string());
                }
                continue;
            }
            for &serialization in &self.serializations {
                names.push(
                    OneM2mSubprotocol {
                        serialization,
                        family,
                    }
                    .name(),
                );
            }
        }
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_all_families_case_insensitively() {
        let cases = [
            ("oneM2M.json", Serialization::Json, NameFamily::Plain),
            ("ONEM2M.CBOR", Serialization::Cbor, NameFamily::Plain),
            ("oneM2M.R2.0.xml", Serialization::Xml, NameFamily::R2),
            ("onem2m.r2.0.JSON", Serialization::Json, NameFamily::R2),
            ("oneM2M-pro-v1.0", Serialization::Json, NameFamily::Draft),
        ];
        for (name, serialization, family) in cases {
            assert_eq!(
                OneM2mSubprotocol::parse(name),
                Some(OneM2mSubprotocol {
                    serialization,
                    family
                })
            );
        }
        for bad in [
            "oneM2M",
            "oneM2M.yaml",
            "oneM2M-R2.0_XML",
            "mqtt",
            "oneM2M.R3.0.json",
        ] {
            assert_eq!(OneM2mSubprotocol::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn honours_client_order_and_policy() {
        let policy = OneM2mPolicy::default();
        assert_eq!(
            policy
                .select(&["chat", "oneM2M.cbor", "oneM2M.json"])
                .unwrap()
                .0,
            1
        );
        let json_only = OneM2mPolicy {
            serializations: vec![Serialization::Json],
            ..policy.clone()
        };
        let (i, p) = json_only
            .select(&["oneM2M.cbor", "oneM2M.R2.0.json"])
            .unwrap();
        assert_eq!((i, p.family), (1, NameFamily::R2));
        assert!(json_only.select(&["oneM2M.xml"]).is_none());
        assert!(json_only.supported().contains("oneM2M.R2.0.json"));
        assert!(!json_only.supported().contains("xml"));
    }
}
