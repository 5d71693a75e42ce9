//! Who wrote an entry, as one typed value with one encoding (`user:<name>`, `device:<name>`,
//! `cli:<login>`, `site:<name>`, `system`). The encoding is part of the hashed entry: never change it.

use std::fmt;

/// The author of an entry. `Display` gives the stored form; [`Author::parse`] reads it back,
/// including what older releases wrote (a bare username for chat entries, `bootstrap`, `anonymous`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Author {
    /// A person, by lower-cased username.
    User(String),
    /// A machine, by device name.
    Device(String),
    /// An administrator at the command line, by the login that ran it.
    Cli(String),
    /// Another site (replication at headquarters).
    Site(String),
    /// The server itself: first start, sign-in bookkeeping, timers.
    System,
    /// Nobody signed in: failed sign-ins and lockouts.
    Anonymous,
}

impl Author {
    pub fn user(name: &str) -> Self {
        Author::User(name.to_string())
    }

    pub fn device(name: &str) -> Self {
        Author::Device(name.to_string())
    }

    /// Reads a stored author. Anything without a known prefix is a bare username (chat entries
    /// of round 1), so old entries keep their meaning; `bootstrap` was the first start.
    pub fn parse(s: &str) -> Self {
        match s.split_once(':') {
            Some(("user", n)) => Author::User(n.to_string()),
            Some(("device", n)) => Author::Device(n.to_string()),
            Some(("cli", n)) => Author::Cli(n.to_string()),
            Some(("site", n)) => Author::Site(n.to_string()),
            _ if s == "system" || s == "bootstrap" => Author::System,
            _ if s == "anonymous" => Author::Anonymous,
            _ => Author::User(s.to_string()),
        }
    }

    /// The kind of principal: `user`, `device`, `cli`, `site`, `system` or `anonymous`.
    pub fn kind(&self) -> &'static str {
        match self {
            Author::User(_) => "user",
            Author::Device(_) => "device",
            Author::Cli(_) => "cli",
            Author::Site(_) => "site",
            Author::System => "system",
            Author::Anonymous => "anonymous",
        }
    }

    /// The name within its kind (`alice` for `user:alice`); the kind itself for `system`.
    pub fn name(&self) -> &str {
        match self {
            Author::User(n) | Author::Device(n) | Author::Cli(n) | Author::Site(n) => n,
            Author::System => "system",
            Author::Anonymous => "anonymous",
        }
    }

    /// The user's name when a person wrote it.
    pub fn as_user(&self) -> Option<&str> {
        match self {
            Author::User(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for Author {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Author::System | Author::Anonymous => f.write_str(self.kind()),
            other => write!(f, "{}:{}", other.kind(), other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Author;

    #[test]
    fn every_author_round_trips_and_old_forms_keep_their_meaning() {
        for a in [
            Author::user("alice"),
            Author::device("pump-7"),
            Author::Cli("root".into()),
            Author::Site("north".into()),
            Author::System,
            Author::Anonymous,
        ] {
            assert_eq!(Author::parse(&a.to_string()), a);
        }
        assert_eq!(Author::user("alice").to_string(), "user:alice");
        assert_eq!(Author::parse("alice"), Author::user("alice"));
        assert_eq!(Author::parse("bootstrap"), Author::System);
        assert_eq!(Author::parse("device:plc-1").name(), "plc-1");
    }
}
