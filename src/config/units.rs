//! How typed values of [`super::EdgeConfig`] are written in the file, the environment and on the
//! command line, the same way in all three: durations with units (`500ms`, `30s`, `10m`; a bare `0`
//! is zero), and enums by their names.

use std::time::Duration;

/// A duration with units (`30s`, `10m`, `500ms`, `1h 30m`); a bare `0` is zero. A bare number
/// other than 0 is refused: `10000` could mean milliseconds or seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?}: {e} (say e.g. 30s, 10m, 500ms; 0 for none)"))
}

/// The shortest text [`parse_duration`] reads back as `d`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        humantime::format_duration(d).to_string().replace(' ', "")
    }
}

/// `#[serde(with = "units::duration")]`: a [`Duration`] as text with units. An integer is refused
/// with the hint, since the old `*_ms` keys took milliseconds.
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            S(String),
            I(i64),
        }
        match Text::deserialize(d)? {
            Text::S(s) => super::parse_duration(&s).map_err(serde::de::Error::custom),
            Text::I(0) => Ok(Duration::ZERO),
            Text::I(i) => Err(serde::de::Error::custom(format!(
                "{i}: a duration needs a unit, as a string (\"{i}ms\", \"30s\", \"10m\")"
            ))),
        }
    }
}

/// `#[serde(with = "units::text")]`: a value written as its name ([`std::fmt::Display`] and
/// [`std::str::FromStr`]).
pub mod text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr<Err: Display>,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// "a, b or c": the names an enum key accepts, for its error.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// An enum whose values are written by name (`FromStr` and `Display`, for [`text`]): each variant
/// with its name, once.
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!(
                        "{other:?}: expected {}",
                        $crate::config::units::one_of(&[$($text),+])
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $text,)+
                })
            }
        }
    };
}
pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_errors_list_the_names() {
        assert_eq!(one_of(&["text", "json"]), "text or json");
        assert_eq!(one_of(&["local", "any", "off"]), "local, any or off");
        assert_eq!(one_of(&["only"]), "only");
    }

    #[test]
    fn durations_round_trip_through_their_text() {
        for text in ["0", "500ms", "30s", "10m", "1h30m", "1s 500ms"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{text}");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
    }

    #[test]
    fn a_bare_number_other_than_zero_is_refused() {
        assert!(parse_duration("10000").unwrap_err().contains("say e.g."));
        assert_eq!(parse_duration(" 0 ").unwrap(), Duration::ZERO);
    }
}
