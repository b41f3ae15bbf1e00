//! Secrets held by the client (access token, app secret), never printed.

use std::fmt;

/// A secret string (access token, app secret). `Debug` and `Display` print `[redacted]`.
#[derive(Clone, Default)]
pub struct SecretToken(String);

impl SecretToken {
    pub fn new(value: impl Into<String>) -> Self {
        SecretToken(value.into())
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for SecretToken {
    fn from(value: String) -> Self {
        SecretToken(value)
    }
}

impl From<&str> for SecretToken {
    fn from(value: &str) -> Self {
        SecretToken(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_token_is_redacted() {
        let t = SecretToken::new("EAAverysecret");
        assert_eq!(format!("{t}"), "[redacted]");
        assert_eq!(format!("{t:?}"), "[redacted]");
        assert_eq!(t.expose(), "EAAverysecret");
    }
}
