//! Response status codes (TS-0004 §6.6.3) with their names, classes and the TS-0009 HTTP mapping.

/// A `responseStatusCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rsc(pub u16);

/// The class a code belongs to (its first digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RscClass {
    Informational,
    Success,
    OriginatorError,
    ReceiverError,
    NetworkError,
    Unknown,
}

impl RscClass {
    /// A short label for metrics (`1xxx`, `2xxx`, …).
    pub fn label(self) -> &'static str {
        match self {
            Self::Informational => "1xxx",
            Self::Success => "2xxx",
            Self::OriginatorError => "4xxx",
            Self::ReceiverError => "5xxx",
            Self::NetworkError => "6xxx",
            Self::Unknown => "other",
        }
    }
}

/// (code, name, HTTP status) for every code of TS-0004 R3+ §6.6.3 with its TS-0009 mapping.
const TABLE: &[(u16, &str, u16)] = &[
    (1000, "ACCEPTED", 202),
    (1001, "ACCEPTED_FOR_NONBLOCKING_REQUEST_SYNCH", 202),
    (1002, "ACCEPTED_FOR_NONBLOCKING_REQUEST_ASYNCH", 202),
    (2000, "OK", 200),
    (2001, "CREATED", 201),
    (2002, "DELETED", 200),
    (2004, "UPDATED", 200),
    (4000, "BAD_REQUEST", 400),
    (4001, "RELEASE_VERSION_NOT_SUPPORTED", 501),
    (4004, "NOT_FOUND", 404),
    (4005, "OPERATION_NOT_ALLOWED", 405),
    (4008, "REQUEST_TIMEOUT", 504),
    (4015, "UNSUPPORTED_MEDIA_TYPE", 415),
    (4101, "SUBSCRIPTION_CREATOR_HAS_NO_PRIVILEGE", 403),
    (4102, "CONTENTS_UNACCEPTABLE", 400),
    (4103, "ORIGINATOR_HAS_NO_PRIVILEGE", 403),
    (4104, "GROUP_REQUEST_IDENTIFIER_EXISTS", 409),
    (4105, "CONFLICT", 409),
    (4106, "ORIGINATOR_NOT_AUTHENTICATED", 403),
    (4107, "SECURITY_ASSOCIATION_REQUIRED", 403),
    (4108, "INVALID_CHILD_RESOURCE_TYPE", 403),
    (4109, "NO_MEMBERS", 403),
    (4110, "GROUP_MEMBER_TYPE_INCONSISTENT", 400),
    (4111, "ESPRIM_UNSUPPORTED_OPTION", 403),
    (4112, "ESPRIM_UNKNOWN_KEY_ID", 403),
    (4113, "ESPRIM_UNKNOWN_ORIG_RAND_ID", 403),
    (4114, "ESPRIM_UNKNOWN_RECV_RAND_ID", 403),
    (4115, "ESPRIM_BAD_MAC", 403),
    (4116, "ESPRIM_IMPERSONATION_ERROR", 403),
    (4117, "ORIGINATOR_HAS_ALREADY_REGISTERED", 403),
    (4118, "ONTOLOGY_NOT_AVAILABLE", 404),
    (4119, "LINKED_SEMANTICS_NOT_AVAILABLE", 404),
    (4120, "INVALID_SEMANTICS", 400),
    (4121, "MASHUP_MEMBER_NOT_FOUND", 404),
    (4122, "INVALID_TRIGGER_PURPOSE", 400),
    (4123, "ILLEGAL_TRANSACTION_STATE_TRANSITION_ATTEMPTED", 409),
    (4124, "BLOCKING_SUBSCRIPTION_ALREADY_EXISTS", 409),
    (4125, "SPECIALIZATION_SCHEMA_NOT_FOUND", 404),
    (4126, "APP_RULE_VALIDATION_FAILED", 400),
    (4127, "OPERATION_DENIED_BY_REMOTE_ENTITY", 403),
    (4128, "SERVICE_SUBSCRIPTION_NOT_ESTABLISHED", 403),
    (4143, "INVALID_SPARQL_QUERY", 400),
    (5000, "INTERNAL_SERVER_ERROR", 500),
    (5001, "NOT_IMPLEMENTED", 501),
    (5103, "TARGET_NOT_REACHABLE", 404),
    (5105, "RECEIVER_HAS_NO_PRIVILEGE", 403),
    (5106, "ALREADY_EXISTS", 409),
    (5107, "REMOTE_ENTITY_NOT_REACHABLE", 404),
    (5203, "TARGET_NOT_SUBSCRIBABLE", 403),
    (5204, "SUBSCRIPTION_VERIFICATION_INITIATION_FAILED", 500),
    (5205, "SUBSCRIPTION_HOST_HAS_NO_PRIVILEGE", 403),
    (5206, "NON_BLOCKING_SYNCH_REQUEST_NOT_SUPPORTED", 501),
    (5207, "NOT_ACCEPTABLE", 406),
    (5208, "DISCOVERY_DENIED_BY_IPE", 403),
    (5209, "GROUP_MEMBERS_NOT_RESPONDED", 500),
    (5210, "ESPRIM_DECRYPTION_ERROR", 500),
    (5211, "ESPRIM_ENCRYPTION_ERROR", 500),
    (5212, "SPARQL_UPDATE_ERROR", 500),
    (5214, "TARGET_HAS_NO_SESSION_CAPABILITY", 500),
    (5215, "SESSION_IS_ONLINE", 500),
    (5216, "JOIN_MULTICAST_GROUP_FAILED", 500),
    (5217, "LEAVE_MULTICAST_GROUP_FAILED", 500),
    (5218, "TRIGGERING_DISABLED_FOR_RECIPIENT", 500),
    (5219, "UNABLE_TO_REPLACE_REQUEST", 500),
    (5220, "UNABLE_TO_RECALL_REQUEST", 500),
    (5221, "CROSS_RESOURCE_OPERATION_FAILURE", 500),
    (5222, "TRANSACTION_PROCESSING_IS_INCOMPLETE", 500),
    (6003, "EXTERNAL_OBJECT_NOT_REACHABLE", 404),
    (6005, "EXTERNAL_OBJECT_NOT_FOUND", 404),
    (6010, "MAX_NUMBER_OF_MEMBER_EXCEEDED", 400),
    (6020, "MGMT_SESSION_CANNOT_BE_ESTABLISHED", 500),
    (6021, "MGMT_SESSION_ESTABLISHMENT_TIMEOUT", 504),
    (6022, "INVALID_CMDTYPE", 400),
    (6023, "INVALID_ARGUMENTS", 400),
    (6024, "INSUFFICIENT_ARGUMENTS", 400),
    (6025, "MGMT_CONVERSION_ERROR", 500),
    (6026, "MGMT_CANCELLATION_FAILED", 500),
    (6028, "ALREADY_COMPLETE", 400),
    (6029, "MGMT_COMMAND_NOT_CANCELLABLE", 400),
    (
        6030,
        "EXTERNAL_OBJECT_NOT_REACHABLE_BEFORE_RQET_TIMEOUT",
        504,
    ),
    (
        6031,
        "EXTERNAL_OBJECT_NOT_REACHABLE_BEFORE_OET_TIMEOUT",
        504,
    ),
];

impl Rsc {
    pub const ACCEPTED: Self = Self(1000);
    pub const OK: Self = Self(2000);
    pub const CREATED: Self = Self(2001);
    pub const DELETED: Self = Self(2002);
    pub const UPDATED: Self = Self(2004);
    pub const BAD_REQUEST: Self = Self(4000);
    pub const RELEASE_VERSION_NOT_SUPPORTED: Self = Self(4001);
    pub const NOT_FOUND: Self = Self(4004);
    pub const OPERATION_NOT_ALLOWED: Self = Self(4005);
    pub const REQUEST_TIMEOUT: Self = Self(4008);
    pub const UNSUPPORTED_MEDIA_TYPE: Self = Self(4015);
    pub const ORIGINATOR_HAS_NO_PRIVILEGE: Self = Self(4103);
    pub const CONFLICT: Self = Self(4105);
    pub const ORIGINATOR_HAS_ALREADY_REGISTERED: Self = Self(4117);
    pub const INTERNAL_SERVER_ERROR: Self = Self(5000);
    pub const NOT_IMPLEMENTED: Self = Self(5001);
    pub const TARGET_NOT_REACHABLE: Self = Self(5103);
    pub const NOT_ACCEPTABLE: Self = Self(5207);

    fn entry(self) -> Option<&'static (u16, &'static str, u16)> {
        TABLE
            .binary_search_by_key(&self.0, |e| e.0)
            .ok()
            .map(|i| &TABLE[i])
    }

    /// Whether TS-0004 defines this code.
    pub fn is_known(self) -> bool {
        self.entry().is_some()
    }

    /// The TS-0004 name, or `UNKNOWN`.
    pub fn name(self) -> &'static str {
        self.entry().map_or("UNKNOWN", |e| e.1)
    }

    /// The TS-0009 HTTP status; unknown codes map by class (2xx→200, 4xxx→400, others→500).
    pub fn http_status(self) -> u16 {
        self.entry().map_or(
            match self.class() {
                RscClass::Informational => 202,
                RscClass::Success => 200,
                RscClass::OriginatorError => 400,
                _ => 500,
            },
            |e| e.2,
        )
    }

    pub fn class(self) -> RscClass {
        match self.0 / 1000 {
            1 => RscClass::Informational,
            2 => RscClass::Success,
            4 => RscClass::OriginatorError,
            5 => RscClass::ReceiverError,
            6 => RscClass::NetworkError,
            _ => RscClass::Unknown,
        }
    }

    pub fn is_success(self) -> bool {
        matches!(self.class(), RscClass::Success | RscClass::Informational)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn names_classes_and_http() {
        assert_eq!(Rsc(4008).name(), "REQUEST_TIMEOUT");
        assert_eq!(Rsc(4008).http_status(), 504);
        assert_eq!(Rsc(4001).http_status(), 501);
        assert_eq!(Rsc(5103).http_status(), 404);
        assert_eq!(Rsc(2004).class(), RscClass::Success);
        assert_eq!(Rsc(4105).class().label(), "4xxx");
        assert!(!Rsc(2003).is_known());
        assert_eq!(Rsc(4999).http_status(), 400);
    }
}
