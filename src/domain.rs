//! Domain validation, as cozy-stack's `lifecycle.validateDomain` does it (config stage).
//!
//! Also the guard that keeps an instance folder inside `fs_root`: a valid domain is one path
//! component, never `.`/`..`, never contains `/`, `\` or NUL.

/// Why a domain was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the domain is empty")]
    Empty,
    #[error("the domain is not valid IDNA: {0}")]
    Idna(String),
    #[error("the domain contains the illegal character {0:?}")]
    IllegalChar(char),
    #[error("the domain starts with a dot")]
    LeadingDot,
    #[error("the domain is {0:?}")]
    Dots(String),
}

const ILLEGAL: &[char] = &[
    ' ', '/', ',', ';', '&', '?', '#', '@', '|', '=', '\'', '"', '\t', '\r', '\n', '\0', '\\',
];

/// Validates and normalizes a domain: IDNA to Unicode, trimmed, lowercased; port allowed.
///
/// cozy-stack's list of forbidden characters is kept, plus `\` so that no domain can name a path on
/// any platform.
pub fn validate_domain(input: &str) -> Result<String, DomainError> {
    let trimmed = input.trim();
    // Check the raw input first so that a NUL or a slash is reported as such, not as an IDNA error.
    if let Some(c) = trimmed.chars().find(|c| ILLEGAL.contains(c) || c.is_control()) {
        return Err(DomainError::IllegalChar(c));
    }
    let (unicode, result) = idna::domain_to_unicode(trimmed);
    if result.is_err() {
        return Err(DomainError::Idna(input.to_string()));
    }
    let d = unicode.trim().to_lowercase();
    if d.is_empty() {
        return Err(DomainError::Empty);
    }
    if d == "." || d == ".." {
        return Err(DomainError::Dots(d));
    }
    if let Some(c) = d.chars().find(|c| ILLEGAL.contains(c) || c.is_control()) {
        return Err(DomainError::IllegalChar(c));
    }
    if d.starts_with('.') {
        return Err(DomainError::LeadingDot);
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_and_keeps_port() {
        assert_eq!(
            validate_domain("Alice.Example.COM:8080").unwrap(),
            "alice.example.com:8080"
        );
    }

    #[test]
    fn decodes_punycode_to_unicode() {
        assert_eq!(validate_domain("xn--caf-dma.example").unwrap(), "café.example");
    }

    #[test]
    fn rejects_forbidden_characters() {
        for bad in [
            "a b.com", "a/b", "a?b", "a#b", "a@b", "a\0b", "a|b", "a=b", "a'b", "a\"b", "a;b", "a&b", "a,b", "a\\b",
        ] {
            assert!(validate_domain(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rejects_dots_and_empty() {
        assert_eq!(validate_domain(""), Err(DomainError::Empty));
        assert!(validate_domain(".").is_err());
        assert!(validate_domain("..").is_err());
        assert_eq!(validate_domain(".example.com"), Err(DomainError::LeadingDot));
    }
}
