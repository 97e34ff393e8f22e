//! `ssl.principal.mapping.rules`: Kafka's rules from a client certificate's distinguished name
//! (RFC 2253, `CN=alice,OU=eng,O=example`) to its principal's name, so that ACLs may name
//! `User:alice`. A comma-separated list, tried in order: `DEFAULT` (the name unchanged), or
//! `RULE:pattern/replacement/` with an optional `L` or `U` (lower or upper case) after it. A rule
//! applies when its pattern matches the whole name; the replacement names its groups `$1`, `$2`
//! (`\` escapes a character). Where no rule applies, the client is refused, as Kafka refuses it.

use regex::Regex;

#[derive(Clone, Debug)]
enum Rule {
    Default,
    Map {
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

/// The parsed rules.
#[derive(Clone, Debug)]
pub struct PrincipalRules(Vec<Rule>);

impl Default for PrincipalRules {
    fn default() -> PrincipalRules {
        PrincipalRules(vec![Rule::Default])
    }
}

/// The rest of `text` up to an unescaped `/` (escapes kept), and what follows that `/`.
fn up_to_slash(text: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '/' => return Some((&text[..i], &text[i + 1..])),
            _ => {}
        }
    }
    None
}

impl PrincipalRules {
    pub fn parse(text: &str) -> Result<PrincipalRules, String> {
        let bad = |why: &str| format!("ssl.principal.mapping.rules `{text}`: {why}");
        let mut rules = Vec::new();
        let mut rest = text.trim_start();
        while !rest.is_empty() {
            let after = if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                after
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) =
                    up_to_slash(after).ok_or_else(|| bad("a RULE without its `/`"))?;
                let (replacement, after) = up_to_slash(after)
                    .ok_or_else(|| bad("a RULE's replacement without its closing `/`"))?;
                let case = after.chars().next().filter(|c| matches!(c, 'L' | 'U'));
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| bad(&format!("pattern `{pattern}`: {e}")))?;
                rules.push(Rule::Map {
                    pattern,
                    replacement: replacement.to_string(),
                    case,
                });
                &after[case.map_or(0, char::len_utf8)..]
            } else {
                return Err(bad("each rule is DEFAULT or RULE:pattern/replacement/[LU]"));
            };
            rest = after.trim_start();
            rest = match rest.strip_prefix(',') {
                Some(next) => next.trim_start(),
                None if rest.is_empty() => rest,
                None => return Err(bad("rules are separated by commas")),
            };
        }
        if rules.is_empty() {
            return Err(bad("no rule"));
        }
        Ok(PrincipalRules(rules))
    }

    /// The principal's name for the distinguished name `dn`: the first rule that applies;
    /// `None` when none does.
    pub fn apply(&self, dn: &str) -> Option<String> {
        self.0.iter().find_map(|rule| match rule {
            Rule::Default => Some(dn.to_string()),
            Rule::Map {
                pattern,
                replacement,
                case,
            } => {
                let groups = pattern.captures(dn)?;
                let mut out = String::new();
                let mut chars = replacement.chars().peekable();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => out.extend(chars.next()),
                        '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                            let mut index = 0usize;
                            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                                index = index.saturating_mul(10).saturating_add(d as usize);
                                chars.next();
                            }
                            out.push_str(groups.get(index).map_or("", |g| g.as_str()));
                        }
                        c => out.push(c),
                    }
                }
                Some(match case {
                    Some('L') => out.to_lowercase(),
                    Some('U') => out.to_uppercase(),
                    _ => out,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_rule_examples_map_names() {
        // Kafka's documentation's examples.
        let rules = PrincipalRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/, RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),\
             ST=(.*?),C=(.*?)$/$1@$2/L, RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            rules.apply("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"),
            Some("serviceuser".into())
        );
        assert_eq!(
            rules.apply("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"),
            Some("adminuser@admin".into())
        );
        assert_eq!(
            rules.apply("OU=x,cN=Bob.Smith,O=y"),
            Some("bob.smith".into())
        );
        assert_eq!(rules.apply("O=nobody"), Some("O=nobody".into()));
        let strict = PrincipalRules::parse("RULE:^CN=([a-z]+)$/$1/U").unwrap();
        assert_eq!(strict.apply("CN=alice"), Some("ALICE".into()));
        assert_eq!(
            strict.apply("CN=alice,O=x"),
            None,
            "the pattern matches whole names"
        );
        let escaped = PrincipalRules::parse(r"RULE:^CN=(.*)\/x$/\$$1\//").unwrap();
        assert_eq!(escaped.apply("CN=a/x"), Some("$a/".into()));
        assert_eq!(PrincipalRules::default().apply("CN=a"), Some("CN=a".into()));
        for bad in [
            "",
            "RULE:^CN=(.*)$",
            "RULE:^CN=(.*)$/$1",
            "RULE:(/x/",
            "DEFAULT DEFAULT",
            "SOME",
        ] {
            assert!(PrincipalRules::parse(bad).is_err(), "{bad}");
        }
    }
}
