//! Syntax checks for identifiers, names and timestamps.

/// Characters the specification forbids in attribute and type names (§4.6.2): they break the query language.
const FORBIDDEN_NAME_CHARS: &[char] = &['<', '>', '"', '\'', '=', ';', '(', ')'];

/// An entity or dataset id must be a URI: a scheme, a colon and no whitespace or forbidden characters.
pub fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !s.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || is_invisible(c)
                || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`')
        })
}

/// Characters that render as nothing or reorder text (RFC 3987 §4.1 excludes bidi formatting characters from
/// IRIs; the others make two ids that look the same differ): format characters, variation selectors,
/// noncharacters, Hangul fillers and the blank Braille pattern.
fn is_invisible(c: char) -> bool {
    let u = c as u32;
    matches!(u,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x2800 | 0x3164
        | 0xFDD0..=0xFDEF | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8
        | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
        || (u & 0xFFFE) == 0xFFFE
}

/// A short or expanded attribute/type name.
pub fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a name must not be empty".into());
    }
    if s.len() > 1024 {
        return Err("a name must not be longer than 1024 characters".into());
    }
    // JSON-LD reserves the keyword form (`@` and letters): such a term would vanish on expansion.
    if s.strip_prefix('@')
        .is_some_and(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphabetic()))
    {
        return Err(format!("the name '{s}' has the form of a JSON-LD keyword"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| FORBIDDEN_NAME_CHARS.contains(c) || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "the name '{s}' contains the forbidden character {c:?}"
        ));
    }
    Ok(())
}

/// An ISO 8601 date-time with offset, e.g. `2024-01-01T10:00:00Z`.
pub fn parse_datetime(s: &str) -> Option<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>().ok()
}

/// Normalise a date-time to UTC, millisecond precision, `Z` suffix.
pub fn format_datetime(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Current time in the broker's timestamp format.
pub fn now() -> String {
    format_datetime(jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_invisible_characters_are_not_uris() {
        for c in [
            '\u{202E}',
            '\u{200B}',
            '\u{FEFF}',
            '\u{FE0F}',
            '\u{E0100}',
            '\u{FDD0}',
            '\u{1FFFF}',
            '\u{3164}',
            '\u{2800}',
        ] {
            assert!(!is_uri(&format!("urn:ngsi-ld:T:a{c}b")), "{:X}", c as u32);
        }
        assert!(
            is_uri("urn:ngsi-ld:Вулиця:Хрещатик"),
            "ordinary non-ASCII stays allowed"
        );
    }

    #[test]
    fn uris() {
        assert!(is_uri("urn:ngsi-ld:Building:1"));
        assert!(is_uri("https://example.org/a"));
        assert!(!is_uri("Building1"));
        assert!(!is_uri("urn:has space"));
        assert!(!is_uri(":x"));
        assert!(!is_uri("1abc:x"));
        assert!(!is_uri("urn:"));
    }

    #[test]
    fn names() {
        assert!(check_name("pm25").is_ok());
        assert!(check_name("https://ex.org/ns#a").is_ok());
        assert!(check_name("a=b").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn datetimes() {
        let t = parse_datetime("2024-01-01T10:00:00+02:00").unwrap();
        assert_eq!(format_datetime(t), "2024-01-01T08:00:00.000Z");
        assert!(parse_datetime("yesterday").is_none());
    }
}
