//! The types XML cannot carry: JSON and CBOR know a number from a string and a list from a scalar,
//! XML text does not. This table gives, for an element in its parent's context, the JSON type of its
//! value (TS-0004 §8.3 / the XSDs, for the primitive parameters and the resources a device and a CSE
//! exchange: `m2m:ae`, `m2m:cnt`, `m2m:cin`, `m2m:sub`, `m2m:sgn`, `m2m:dbg`, `m2m:uri`, `m2m:uril`,
//! plus the common attributes of `m2m:cb`, `m2m:csr`, `m2m:grp`, `m2m:acp`). Members it does not know
//! decode from XML as strings.

/// The JSON type of an XML element's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Float,
    Bool,
    /// `xs:list` of strings: space-separated in one element.
    ListStr,
    /// `xs:list` of integers.
    ListInt,
    /// A complex element: children become members.
    Object,
    /// A repeated complex element: always an array, even with one occurrence.
    ListObj,
    /// `m2m:absRelTimestamp`: digits are a relative integer, anything else a timestamp string.
    AbsRel,
    /// Unknown: a string.
    Any,
}

/// The kind of element `name` inside element `parent`.
pub fn kind(parent: &str, name: &str) -> Kind {
    match (parent, name) {
        ("fc", "ty" | "chty" | "pty") | ("enc", "net" | "chty") => return Kind::ListInt,
        ("fc", "lbl" | "cty") | ("rt", "nu") | ("enc", "atr") => return Kind::ListStr,
        ("nev", "net") => return Kind::Int,
        _ => {}
    }
    match name {
        "op" | "ty" | "rsc" | "rcn" | "ec" | "drt" | "cnst" | "cnot" | "rtv" | "mni" | "mbs"
        | "mia" | "cni" | "cbs" | "st" | "cs" | "nct" | "exc" | "nec" | "pn" | "nsp" | "cst"
        | "mt" | "mnm" | "cnm" | "csy" | "acop" | "fu" | "lim" | "lvl" | "ofst" | "fo" | "sts"
        | "stb" | "sza" | "szb" | "num" | "mnn" | "tww" | "rs" | "net" | "typ" | "acod"
        | "chty" | "pty" | "rqps" => Kind::Int,
        "rqet" | "rset" | "oet" | "rp" | "dur" => Kind::AbsRel,
        "da" | "tqi" | "sqi" | "asi" | "auri" | "rr" | "vrq" | "sud" | "disr" | "mtv" | "ssi"
        | "ln" | "nsi" | "acip" => Kind::Bool,
        "rids" | "tkns" | "tids" | "ltids" | "grtm" | "lbl" | "acpi" | "at" | "aa" | "poa"
        | "srv" | "csz" | "nu" | "mid" | "macp" | "acor" | "m2m:uril" | "m2m:atrl" | "dcse"
        | "aus" | "cty" | "atr" => Kind::ListStr,
        "srt" => Kind::ListInt,
        "acr" | "ch" | "rrf" => Kind::ListObj,
        "m2m:dbg" | "m2m:uri" => Kind::Str,
        "pc" | "rt" | "fc" | "enc" | "nev" | "rep" | "bn" | "rl" | "pv" | "pvs" | "ors"
        | "acco" | "om" | "m2m:rrl" => Kind::Object,
        "rn" | "ri" | "pi" | "ct" | "lt" | "et" | "cr" | "api" | "apn" | "aei" | "nl" | "or"
        | "cnf" | "con" | "conr" | "su" | "sur" | "csi" | "cb" | "li" | "gn" | "to" | "fr"
        | "rqi" | "rvi" | "vsi" | "ot" | "gid" | "crb" | "cra" | "ms" | "us" | "exb" | "exa"
        | "nm" | "val" | "nfu" | "gpi" | "nar" | "cstn" => Kind::Str,
        n if n.starts_with("m2m:") => Kind::Object,
        _ => Kind::Any,
    }
}

/// Whether members of this element travel as XML attributes: `rn` of a resource (TS-0004 §8.3.3).
pub fn is_attribute(element: &str, member: &str) -> bool {
    member == "rn" && element.starts_with("m2m:")
}
