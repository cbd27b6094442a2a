//! mTLS principal mapping: Kafka's `ssl.principal.mapping.rules` (KIP-371).
//!
//! A rule list is a comma-separated sequence of `RULE:pattern/replacement/[LU]` entries and the
//! keyword `DEFAULT`. The client certificate's subject, written as an RFC 2253 string (for
//! example `CN=alice,OU=eng,O=Acme`), is matched against each rule in order; the first rule whose
//! pattern matches the **whole** subject produces the user name:
//!
//! * `RULE:pattern/replacement/` rewrites the subject with `replacement`, which may refer to
//!   capture groups as `$1`, `${1}` or `${name}` (Java's `Matcher.replaceAll` syntax; a
//!   backslash makes the next character literal, so `\$` is a dollar sign);
//! * a trailing `L` or `U` lower- or upper-cases the result;
//! * `DEFAULT` yields the full subject unchanged.
//!
//! A `/` inside a pattern or replacement is written `\/`. When no rule matches, or a rule yields
//! an empty name, [`PrincipalMapper::map`] returns `None`, which the gateway treats as an
//! authentication failure.

use std::fmt;

use regex::Regex;

use crate::principal::Principal;

/// Why a rule list was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The rule list is empty (Kafka's default is `DEFAULT`).
    #[error("ssl.principal.mapping.rules is empty; use DEFAULT for the full subject")]
    Empty,
    /// A rule is neither `DEFAULT` nor a well-formed `RULE:pattern/replacement/[LU]`.
    #[error("invalid principal mapping rule `{rule}`: {reason}")]
    InvalidRule {
        /// The offending text.
        rule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A rule's pattern is not a valid regular expression.
    #[error("invalid pattern in principal mapping rule `{rule}`: {reason}")]
    InvalidPattern {
        /// The offending rule.
        rule: String,
        /// The regex compiler's message.
        reason: String,
    },
}

/// Case conversion applied to a rule's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// One parsed rule.
#[derive(Clone, Debug)]
enum Rule {
    /// `DEFAULT`: the subject itself.
    Default,
    /// `RULE:pattern/replacement/[LU]`.
    Rewrite {
        /// The rule as written (for display).
        source: String,
        /// The pattern anchored at both ends (`^(?:pattern)$`), deciding whether the rule applies.
        full: Regex,
        /// The pattern as written, used for the replace-all (Java's `String.replaceAll`).
        pattern: Regex,
        /// The replacement translated to the `regex` crate's syntax.
        replacement: String,
        case: Case,
    },
}

impl Rule {
    fn apply(&self, subject: &str) -> Option<String> {
        match self {
            Rule::Default => Some(subject.to_string()),
            Rule::Rewrite {
                full,
                pattern,
                replacement,
                case,
                ..
            } => {
                if !full.is_match(subject) {
                    return None;
                }
                let result = pattern
                    .replace_all(subject, replacement.as_str())
                    .into_owned();
                Some(match case {
                    Case::Keep => result,
                    Case::Lower => result.to_lowercase(),
                    Case::Upper => result.to_uppercase(),
                })
            }
        }
    }
}

/// Maps certificate subjects to principals with Kafka's `ssl.principal.mapping.rules`.
#[derive(Clone, Debug)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl PrincipalMapper {
    /// Parses a rule list such as
    /// `RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,DEFAULT`.
    ///
    /// Whitespace around rules and commas is ignored. An empty list is refused.
    pub fn parse(rules: &str) -> Result<Self, MappingError> {
        let mut parser = Parser {
            text: rules,
            pos: 0,
        };
        let mut parsed = Vec::new();
        parser.skip_ws();
        while !parser.at_end() {
            parsed.push(parser.rule()?);
            parser.skip_ws();
            if parser.at_end() {
                break;
            }
            if !parser.eat(",") {
                return Err(parser.invalid("expected `,` between rules"));
            }
            parser.skip_ws();
            if parser.at_end() {
                return Err(parser.invalid("trailing `,`"));
            }
        }
        if parsed.is_empty() {
            return Err(MappingError::Empty);
        }
        Ok(Self { rules: parsed })
    }

    /// The principal for a subject DN (RFC 2253 form), or `None` when no rule matches or the
    /// matching rule yields an empty name.
    pub fn map(&self, subject_dn: &str) -> Option<Principal> {
        let name = self.rules.iter().find_map(|rule| rule.apply(subject_dn))?;
        if name.is_empty() {
            None
        } else {
            Some(Principal::user(name))
        }
    }
}

impl Default for PrincipalMapper {
    /// Kafka's default, `DEFAULT`: the principal name is the full subject.
    fn default() -> Self {
        Self {
            rules: vec![Rule::Default],
        }
    }
}

impl fmt::Display for PrincipalMapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match rule {
                Rule::Default => f.write_str("DEFAULT")?,
                Rule::Rewrite { source, .. } => f.write_str(source)?,
            }
        }
        Ok(())
    }
}

/// A small cursor over the rule list.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// The text of the rule being parsed, up to the next comma (for error messages).
    fn invalid(&self, reason: &str) -> MappingError {
        let rest = self.rest();
        let rule = rest.split(',').next().unwrap_or(rest).trim().to_string();
        MappingError::InvalidRule {
            rule: if rule.is_empty() {
                self.text.trim().to_string()
            } else {
                rule
            },
            reason: reason.to_string(),
        }
    }

    fn rule(&mut self) -> Result<Rule, MappingError> {
        let start = self.pos;
        if self.eat("DEFAULT") {
            return Ok(Rule::Default);
        }
        if !self.eat("RULE:") {
            return Err(self.invalid("expected `DEFAULT` or `RULE:pattern/replacement/[LU]`"));
        }
        let pattern_text = self.segment().ok_or_else(|| {
            self.invalid_from(start, "pattern is not terminated by an unescaped `/`")
        })?;
        let replacement_text = self.segment().ok_or_else(|| {
            self.invalid_from(start, "replacement is not terminated by an unescaped `/`")
        })?;
        let case = if self.eat("L") {
            Case::Lower
        } else if self.eat("U") {
            Case::Upper
        } else {
            Case::Keep
        };
        let source = self.text[start..self.pos].to_string();
        let pattern_src = unescape_slashes(pattern_text);
        let compile = |src: &str| {
            Regex::new(src).map_err(|e| MappingError::InvalidPattern {
                rule: source.clone(),
                reason: e.to_string(),
            })
        };
        let pattern = compile(&pattern_src)?;
        let full = compile(&format!("^(?:{pattern_src})$"))?;
        let replacement = translate_replacement(&unescape_slashes(replacement_text), &pattern)
            .map_err(|reason| MappingError::InvalidRule {
                rule: source.clone(),
                reason,
            })?;
        Ok(Rule::Rewrite {
            source,
            full,
            pattern,
            replacement,
            case,
        })
    }

    fn invalid_from(&self, start: usize, reason: &str) -> MappingError {
        MappingError::InvalidRule {
            rule: self.text[start..].trim().to_string(),
            reason: reason.to_string(),
        }
    }

    /// Reads up to the next unescaped `/` and consumes it; `None` when there is none.
    fn segment(&mut self) -> Option<&'a str> {
        let text = self.text;
        let rest = &text[self.pos..];
        let bytes = rest.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'/' => {
                    let start = self.pos;
                    self.pos += i + 1;
                    return Some(&text[start..start + i]);
                }
                _ => i += 1,
            }
        }
        None
    }
}

/// `\/` written to keep a slash inside a pattern or replacement becomes a plain `/`; other
/// escapes are left for the regex (or replacement) syntax.
fn unescape_slashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('/') => out.push('/'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Translates a Java `Matcher.replaceAll` replacement (`$1`, `${name}`, `\x`) into the `regex`
/// crate's syntax (`${1}`, `${name}`, `$$` for a literal dollar).
fn translate_replacement(text: &str, pattern: &Regex) -> Result<String, String> {
    let group_count = pattern.captures_len() - 1;
    let mut out = String::with_capacity(text.len() + 8);
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    return Err("replacement ends with a lone `\\`".to_string());
                };
                push_literal(&mut out, next);
                i += 2;
            }
            '$' => {
                i += 1;
                match chars.get(i) {
                    Some('{') => {
                        let close = chars[i..]
                            .iter()
                            .position(|&c| c == '}')
                            .ok_or("unterminated `${` group reference")?;
                        let name: String = chars[i + 1..i + close].iter().collect();
                        let known = match name.parse::<usize>() {
                            Ok(n) => n <= group_count,
                            Err(_) => pattern.capture_names().flatten().any(|n| n == name),
                        };
                        if name.is_empty() || !known {
                            return Err(format!("no group `{name}` in the pattern"));
                        }
                        out.push_str("${");
                        out.push_str(&name);
                        out.push('}');
                        i += close + 1;
                    }
                    Some(c) if c.is_ascii_digit() => {
                        // Java: the first digit always belongs to the reference, further digits
                        // only while the group number stays valid.
                        let mut number = c.to_digit(10).map_or(0, |d| d as usize);
                        if number > group_count {
                            return Err(format!("no group {number} in the pattern"));
                        }
                        i += 1;
                        while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
                            let candidate = number * 10 + d as usize;
                            if candidate > group_count {
                                break;
                            }
                            number = candidate;
                            i += 1;
                        }
                        out.push_str(&format!("${{{number}}}"));
                    }
                    _ => return Err("`$` must be followed by a group number or `{name}`".into()),
                }
            }
            c => {
                push_literal(&mut out, c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    if c == '$' {
        out.push_str("$$");
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KAFKA_DOC_RULES: &str = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,DEFAULT";

    fn name(mapper: &PrincipalMapper, dn: &str) -> Option<String> {
        mapper.map(dn).map(|p| p.name)
    }

    #[test]
    fn kafka_documented_examples() {
        let m = PrincipalMapper::parse(KAFKA_DOC_RULES).unwrap();
        // From the Kafka security documentation.
        assert_eq!(
            name(
                &m,
                "CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
            )
            .as_deref(),
            Some("serviceuser")
        );
        assert_eq!(
            name(
                &m,
                "CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"
            )
            .as_deref(),
            Some("adminuser@admin")
        );
        assert_eq!(
            name(&m, "CN=kafka1,O=Apache").as_deref(),
            Some("kafka1"),
            "third rule lower-cases the CN"
        );
        assert_eq!(
            name(&m, "OU=nocn,O=Apache").as_deref(),
            Some("OU=nocn,O=Apache")
        );
        let p = m.map("CN=serviceuser,OU=ServiceUsers,O=Acme").unwrap();
        assert_eq!(p, Principal::user("serviceuser"));
        assert_eq!(p.to_string(), "User:serviceuser");
    }

    #[test]
    fn kafka_unit_test_examples() {
        // Mirrors Kafka's SslPrincipalMapperTest.testSslPrincipalMapper.
        let rules = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, \
                     RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, \
                     RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U, \
                     RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, \
                     DEFAULT";
        let m = PrincipalMapper::parse(rules).unwrap();
        let cases = [
            ("CN=Duke,OU=ServiceUsers,O=Org,C=US", "duke"),
            ("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US", "duke@sme"),
            ("cn=duke,ou=sme,dc=mycp,dc=com", "DUKE@SME"),
            ("cN=duke,OU=JavaSoft,O=Sun Microsystems", "DUKE"),
            (
                "OU=JavaSoft,O=Sun Microsystems,C=US",
                "OU=JavaSoft,O=Sun Microsystems,C=US",
            ),
        ];
        for (dn, want) in cases {
            assert_eq!(name(&m, dn).as_deref(), Some(want), "{dn}");
        }
    }

    #[test]
    fn first_match_wins_and_no_match_is_none() {
        let m = PrincipalMapper::parse("RULE:^CN=(.*?),O=Acme$/$1/,RULE:^CN=(.*?),.*$/other-$1/")
            .unwrap();
        assert_eq!(name(&m, "CN=alice,O=Acme").as_deref(), Some("alice"));
        assert_eq!(name(&m, "CN=bob,O=Else").as_deref(), Some("other-bob"));
        assert_eq!(m.map("O=Acme"), None, "no rule matches, no DEFAULT");
    }

    #[test]
    fn pattern_must_match_whole_subject() {
        // Unanchored pattern: Java's matches() needs the whole DN, so `CN=alice` alone does not
        // apply to `CN=alice,O=Acme`.
        let m = PrincipalMapper::parse("RULE:CN=alice/x/").unwrap();
        assert_eq!(m.map("CN=alice,O=Acme"), None);
        assert_eq!(name(&m, "CN=alice").as_deref(), Some("x"));
    }

    #[test]
    fn default_rule_and_default_impl() {
        let m = PrincipalMapper::parse("DEFAULT").unwrap();
        assert_eq!(
            name(&m, "CN=alice,OU=eng,O=Acme").as_deref(),
            Some("CN=alice,OU=eng,O=Acme")
        );
        let d = PrincipalMapper::default();
        assert_eq!(name(&d, "CN=x").as_deref(), Some("CN=x"));
        assert_eq!(d.to_string(), "DEFAULT");
    }

    #[test]
    fn upper_and_lower_case_flags() {
        let m = PrincipalMapper::parse("RULE:^CN=([^,]*).*$/$1/U").unwrap();
        assert_eq!(name(&m, "CN=Alice,O=Acme").as_deref(), Some("ALICE"));
        let m = PrincipalMapper::parse("RULE:^CN=([^,]*).*$/$1/L").unwrap();
        assert_eq!(name(&m, "CN=Alice,O=Acme").as_deref(), Some("alice"));
    }

    #[test]
    fn escaped_slash_literal_dollar_and_named_groups() {
        let m = PrincipalMapper::parse(r"RULE:^CN=([^,]*),OU=a\/b$/$1\/\$x/").unwrap();
        assert_eq!(name(&m, "CN=al,OU=a/b").as_deref(), Some("al/$x"));
        let m = PrincipalMapper::parse(r"RULE:^CN=(?P<user>[^,]*),O=(.*)$/${user}.${2}/").unwrap();
        assert_eq!(name(&m, "CN=al,O=acme").as_deref(), Some("al.acme"));
        // `$1_x` is group 1 followed by `_x` (Java), not a group named `1_x`.
        let m = PrincipalMapper::parse("RULE:^CN=([^,]*)$/$1_x/").unwrap();
        assert_eq!(name(&m, "CN=al").as_deref(), Some("al_x"));
        // `$12` with one group is group 1 followed by `2`.
        let m = PrincipalMapper::parse("RULE:^CN=([^,]*)$/$12/").unwrap();
        assert_eq!(name(&m, "CN=al").as_deref(), Some("al2"));
    }

    #[test]
    fn whitespace_and_display_round_trip() {
        let m = PrincipalMapper::parse("  RULE:^CN=(.*)$/$1/L ,\n DEFAULT  ").unwrap();
        assert_eq!(m.to_string(), "RULE:^CN=(.*)$/$1/L,DEFAULT");
        let again = PrincipalMapper::parse(&m.to_string()).unwrap();
        assert_eq!(name(&again, "CN=Bob").as_deref(), Some("bob"));
    }

    #[test]
    fn empty_result_is_no_match() {
        let m = PrincipalMapper::parse("RULE:^CN=(.*)$/$1/,DEFAULT").unwrap();
        assert_eq!(m.map("CN="), None);
    }

    #[test]
    fn invalid_rules_are_refused() {
        assert_eq!(PrincipalMapper::parse("").unwrap_err(), MappingError::Empty);
        assert_eq!(
            PrincipalMapper::parse("   ").unwrap_err(),
            MappingError::Empty
        );
        for bad in [
            "NOTARULE",
            "RULE:^CN=(.*)$",
            "RULE:^CN=(.*)$/$1",
            "RULE:^CN=(.*)$/$1/X",
            "RULE:^CN=(.*)$/$1/L,",
            "DEFAULT,,DEFAULT",
            "RULE:^CN=(.*)$/$2/",
            "RULE:^CN=(.*)$/${nope}/",
            "RULE:^CN=(.*)$/$/",
            "DEFAULTX",
        ] {
            assert!(
                matches!(
                    PrincipalMapper::parse(bad),
                    Err(MappingError::InvalidRule { .. })
                ),
                "{bad:?} should be refused: {:?}",
                PrincipalMapper::parse(bad)
            );
        }
        assert!(matches!(
            PrincipalMapper::parse("RULE:^CN=((.*)$/$1/"),
            Err(MappingError::InvalidPattern { .. })
        ));
    }
}
