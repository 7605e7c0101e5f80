//! Rules as data: the TOML schema, and its compiled form.
//!
//! A rule file holds `[[rule]]` tables. Each rule names what it finds (`id`, `name`,
//! `provider`), how to find it cheaply (`keywords`: literal strings, matched ASCII
//! case-insensitively unless `keywords_case_sensitive`, at least one of which must
//! occur in any text the rule can match), how to find it exactly (`pattern`: a
//! regex with ASCII semantics whose `secret` group, or first group, or whole match
//! is the secret), and how to tell it from look-alikes (`checksum`, `min_entropy`,
//! `generic`). Every rule carries `examples` that must be
//! found and `negative_examples` that must not; a test runs all of them.

use regex_automata::meta::{self, Regex};
use serde::Deserialize;
use std::fmt;

/// How sure a finding is that it is a live credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    #[default]
    High,
    Critical,
}

impl Severity {
    /// Lower-case name, as used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A checksum the token format itself carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Checksum {
    /// Last six base62 characters are the CRC32 of the thirty before (GitHub, npm).
    GithubCrc32,
    /// Keyward client key: CRC32 over prefix, environment and random part.
    Keyward,
    /// NATS nkey seed: base32 with a CRC-16 over prefix and seed.
    NatsNkey,
    /// Cloudflare scannable credential (`cfk_`, `cfut_`, `cfat_`): 40 alphanumerics and
    /// the CRC32 of those 40 as eight lower-case hex digits.
    CloudflareCrc32,
}

/// How sure a finding is that it is a real credential rather than a look-alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    #[default]
    Medium,
    High,
}

impl Confidence {
    /// Lower-case name, as used in reports and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }

    /// One level lower (`Low` stays `Low`).
    pub fn lower(self) -> Confidence {
        match self {
            Confidence::High => Confidence::Medium,
            _ => Confidence::Low,
        }
    }

    /// Parses `low`, `medium` or `high`.
    pub fn parse(s: &str) -> Option<Confidence> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Some(Confidence::Low),
            "medium" => Some(Confidence::Medium),
            "high" => Some(Confidence::High),
            _ => None,
        }
    }
}

/// A check written in code that a candidate must pass, for formats a regex cannot
/// judge alone. The check sees the whole match and the text around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// `name = value` where the name says password: the value must be a literal
    /// (not a variable, call, template, path, URL or placeholder). Human-made
    /// passwords pass, at lower confidence.
    PasswordAssignment,
    /// `name = value` where the name says secret, token, API key, salt, …: the
    /// value must be a literal that looks machine-made.
    SecretAssignment,
    /// A JSON Web Token: base64url header that decodes to a JSON object with `alg`,
    /// and a payload that decodes to a JSON object.
    Jwt,
    /// `Basic <base64>` that decodes to printable `user:password`.
    BasicAuth,
    /// `scheme://user:password@host` (groups `user`, `secret`, `host`): a literal
    /// password, not a documented placeholder URL.
    UrlCredentials,
    /// A bearer or token credential in an `Authorization` header or client code:
    /// machine-made, not a variable or placeholder.
    Bearer,
}

/// Candidates a rule reads in code rather than with its regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Parse {
    /// `name = value` and its relatives, from the secret word in the name.
    Assignment,
    /// `scheme://user:password@host`, from the `://`.
    Url,
    /// `--password value`, `ENV DB_PASSWORD value`: a command-line flag or a
    /// Dockerfile `ENV`/`ARG` whose name starts with the keyword, then blanks and
    /// the value.
    Flag,
    /// `<password>value`: an XML element whose name starts with the keyword.
    XmlElement,
    /// A JSON Web Token starting at the keyword (`eyJ`), not glued to a word
    /// before it; the check measures it.
    Jwt,
    /// `Basic <base64>`: one to four blanks after the keyword, then 6 to 400
    /// base64 bytes and up to two `=`, ending the run.
    Basic,
}

/// One rule exactly as written in a rule file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable identifier, kebab-case, unique across all rules (e.g. `openai-project-key`).
    pub id: String,
    /// Human name shown in reports.
    pub name: String,
    /// Who issues the credential (e.g. `OpenAI`).
    pub provider: String,
    /// Literals (ASCII case-insensitive) of which at least one occurs inside every
    /// match of `pattern` (not merely near it): the engine searches only around them.
    pub keywords: Vec<String>,
    /// The keywords occur in matches exactly as written (the pattern matches them
    /// case-sensitively): occurrences in another case are not searched around.
    /// Rules whose keyword is a prefix of common words in another case (`-u` in
    /// `-User`, `-us` in `-Us`) are then not searched in text full of those words.
    #[serde(default)]
    pub keywords_case_sensitive: bool,
    /// Regex over bytes; the secret is the `secret` group, else group 1, else the match.
    pub pattern: String,
    /// The most bytes any match holds before the first byte of a keyword occurrence
    /// inside it (a name prefix before `password`, say). Bounded rules search from
    /// this far before each occurrence instead of their whole maximum length: for
    /// rules whose keyword sits near the start, most of the window is saved.
    #[serde(default)]
    pub max_lead: Option<usize>,
    /// Minimum Shannon entropy of the secret, in bits per character.
    #[serde(default)]
    pub min_entropy: Option<f64>,
    /// A checksum the secret must satisfy.
    #[serde(default)]
    pub checksum: Option<Checksum>,
    /// The format has no fixed structure of its own (a password after `password=`,
    /// a hex key after a provider name): hashes, UUIDs, identifiers and other
    /// look-alikes are filtered out more aggressively.
    #[serde(default)]
    pub generic: bool,
    /// A check in code the candidate must pass (see [`Check`]); it also sets the
    /// finding's confidence.
    #[serde(default)]
    pub check: Option<Check>,
    /// `"assignment"`, `"flag"`, `"xml-element"`, `"url"`, `"jwt"`, `"basic"`:
    /// candidates are read in code at each keyword occurrence (`assign::parse_at`,
    /// `assign::flag_at`, `assign::xml_element_at`, `structural::url_at`,
    /// `structural::jwt_starts_at`, `structural::basic_at`) instead of by running
    /// `pattern`, which then describes the same shape for streaming redaction and
    /// for readers. A test holds each to its pattern.
    #[serde(default)]
    pub parse: Option<Parse>,
    #[serde(default)]
    pub severity: Severity,
    /// Texts in which this rule must report a finding.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Texts in which this rule must report nothing.
    #[serde(default)]
    pub negative_examples: Vec<String>,
}

/// A rule file: `[[rule]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
}

/// Why a rule could not be used.
#[derive(Debug)]
pub struct RuleError {
    pub rule_id: String,
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule `{}`: {}", self.rule_id, self.reason)
    }
}

impl std::error::Error for RuleError {}

/// Index of the capture group called `name`, if any.
fn named_group(hir: &regex_syntax::hir::Hir, name: &str) -> Option<usize> {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Capture(c) => {
            if c.name.as_deref() == Some(name) {
                Some(c.index as usize)
            } else {
                named_group(&c.sub, name)
            }
        }
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().find_map(|h| named_group(h, name)),
        HirKind::Repetition(r) => named_group(&r.sub, name),
        _ => None,
    }
}

/// A rule ready to run.
#[derive(Debug)]
pub struct Rule {
    pub spec: RuleSpec,
    /// Compiled on first use: a scan usually triggers a handful of rules, and
    /// compiling all of them costs more than scanning a small repository.
    regex: std::sync::OnceLock<Regex>,
    /// Capture group index holding the secret (0 = whole match).
    pub(crate) secret_group: usize,
    /// Longest match in bytes, when the pattern bounds it. Bounded rules search only
    /// a window around each keyword occurrence; unbounded ones search whole inputs.
    pub(crate) max_len: Option<usize>,
    /// Literals one of which starts every match, each longer than any keyword
    /// (`PuTTY-User-Key-File-2` and `-3` for the keyword `PuTTY-User-Key-File-`):
    /// a prefilter for exactly these skips keyword occurrences that cannot start
    /// a match, even where they repeat densely.
    selective_prefix: Option<Vec<Vec<u8>>>,
}

/// Which literal prefilter a rule's regex uses.
#[derive(Clone, Copy)]
enum Prefiltering<'a> {
    /// The regex engine's own choice.
    Auto,
    None,
    /// Exactly these literals. The engine's own choice would cut literals that
    /// share a long prefix down to that prefix, which here is the keyword.
    Literals(&'a [Vec<u8>]),
}

/// True when every match of `hir` starts with one of a finite set of literals,
/// each longer than every keyword and at least [`MIN_SELECTIVE_PREFIX`] bytes: a
/// search for those literals passes over occurrences of the keywords alone, and
/// text that repeats a literal densely still costs at most one search restart
/// per that many bytes.
fn prefix_outreaches_keywords(
    hir: &regex_syntax::hir::Hir,
    keywords: &[String],
) -> Option<Vec<Vec<u8>>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let longest_keyword = keywords.iter().map(String::len).max().unwrap_or(0);
    let prefixes = Extractor::new().kind(ExtractKind::Prefix).extract(hir);
    let lits = prefixes.literals()?;
    let selective = !lits.is_empty()
        && lits
            .iter()
            .all(|l| l.len() > longest_keyword && l.len() >= MIN_SELECTIVE_PREFIX);
    selective.then(|| lits.iter().map(|l| l.as_bytes().to_vec()).collect())
}

/// The shortest prefix literal worth a prefilter (see [`prefix_outreaches_keywords`]).
const MIN_SELECTIVE_PREFIX: usize = 16;

impl Rule {
    /// Compiles a spec, checking that it is usable: a valid pattern, at least one
    /// keyword of two or more characters, a kebab-case id.
    pub fn compile(spec: RuleSpec) -> Result<Rule, RuleError> {
        let err = |reason: String| RuleError {
            rule_id: spec.id.clone(),
            reason,
        };
        if spec.id.is_empty()
            || !spec
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err("id must be non-empty kebab-case ([a-z0-9-])".into()));
        }
        if spec.keywords.is_empty() || spec.keywords.iter().any(|k| k.len() < 2) {
            return Err(err(
                "needs at least one keyword, each two or more characters long".into(),
            ));
        }
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .unicode(false)
            .build()
            .parse(&spec.pattern)
            .map_err(|e| err(format!("invalid pattern: {e}")))?;
        let secret_group = named_group(&hir, "secret").unwrap_or(
            if hir.properties().explicit_captures_len() > 0 {
                1
            } else {
                0
            },
        );
        let max_len = hir.properties().maximum_len();
        let selective_prefix = max_len
            .is_some()
            .then(|| prefix_outreaches_keywords(&hir, &spec.keywords))
            .flatten();
        Ok(Rule {
            spec,
            regex: std::sync::OnceLock::new(),
            secret_group,
            max_len,
            selective_prefix,
        })
    }

    /// Compiles the pattern now rather than on first use, reporting any error
    /// (a pattern can parse yet exceed the compiled size limit).
    pub fn compile_now(&self) -> Result<(), RuleError> {
        if self.regex.get().is_some() {
            return Ok(());
        }
        let re =
            Self::build_regex(&self.spec.pattern, self.prefilters()).map_err(|e| RuleError {
                rule_id: self.spec.id.clone(),
                reason: format!("invalid pattern: {e}"),
            })?;
        let _ = self.regex.set(re);
        Ok(())
    }

    fn build_regex(
        pattern: &str,
        prefilter: Prefiltering<'_>,
    ) -> Result<Regex, Box<meta::BuildError>> {
        // ASCII semantics: `\b`, `\w`, `\d`, `\s` and `.` work on bytes. Tokens are
        // ASCII, and Unicode word boundaries push the regex engines off their fast
        // paths on non-ASCII text (a 30x slowdown measured on source trees).
        // Patterns may opt back in with `(?u)`.
        let syntax = regex_automata::util::syntax::Config::new()
            .unicode(false)
            .utf8(false);
        let config = meta::Config::new()
            .utf8_empty(false)
            .nfa_size_limit(Some(32 << 20))
            // Private-key rules have bounds in the thousands; each bounded step is
            // a DFA state, and a small cache would thrash on every key block.
            .hybrid_cache_capacity(16 << 20);
        let config = match prefilter {
            Prefiltering::Auto => config.auto_prefilter(true),
            Prefiltering::None => config.auto_prefilter(false),
            Prefiltering::Literals(lits) => config.auto_prefilter(false).prefilter(
                regex_automata::util::prefilter::Prefilter::new(
                    regex_automata::MatchKind::LeftmostFirst,
                    lits,
                ),
            ),
        };
        Regex::builder()
            .syntax(syntax)
            .configure(config)
            .build(pattern)
            .map_err(Box::new)
    }

    /// The compiled pattern. Rules reach a detector only after their pattern
    /// parsed; built-in ones are all compiled by a test, user ones at build time.
    ///
    pub(crate) fn regex(&self) -> &Regex {
        self.regex.get_or_init(|| {
            Self::build_regex(&self.spec.pattern, self.prefilters())
                .unwrap_or_else(|e| panic!("rule {}: {e}", self.spec.id))
        })
    }

    /// Which literal prefilter the pattern's search uses.
    ///
    /// Bounded rules search only windows around keyword occurrences, so most have
    /// none: in a window a prefilter finds the keyword the window was made for,
    /// and where keywords repeat densely it would restart on every one of them
    /// (measured: 44 MiB/s with it, 560 MiB/s without, on `key key …`). There is
    /// one for the literals that outreach the keywords (`selective_prefix`), given to
    /// the engine as they are. Unbounded rules search whole inputs with the
    /// engine's own choice.
    fn prefilters(&self) -> Prefiltering<'_> {
        match (&self.selective_prefix, self.max_len) {
            (Some(lits), _) => Prefiltering::Literals(lits),
            (None, None) => Prefiltering::Auto,
            (None, Some(_)) => Prefiltering::None,
        }
    }

    /// Longest possible match in bytes, if the pattern bounds it.
    pub fn max_match_len(&self) -> Option<usize> {
        self.max_len
    }

    /// True when the rule's check measures the secret itself past the pattern's
    /// match (assignment values: the pattern finds only their first byte, and the
    /// judgement reads the rest of the line).
    pub(crate) fn reads_past_match(&self) -> bool {
        matches!(
            self.spec.check,
            Some(Check::PasswordAssignment | Check::SecretAssignment | Check::Jwt)
        )
    }

    /// How far from a keyword occurrence the text can still change this rule's
    /// findings: the longest match, plus for [`Rule::reads_past_match`] rules what
    /// the check reads past it (an assignment's value and the rest of its line, a
    /// whole JWT).
    pub(crate) fn reach(&self) -> Option<usize> {
        let extra = match self.spec.check {
            Some(Check::PasswordAssignment | Check::SecretAssignment) => {
                crate::assign::MAX_READ_PAST
            }
            Some(Check::Jwt) => crate::structural::JWT_MAX_LEN,
            _ => 0,
        };
        self.max_len.map(|m| m + extra)
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// Rank used when two rules claim overlapping text: checksummed formats beat
    /// fixed-prefix formats, which beat generic context rules and structural formats
    /// (JWT, Basic), which beat bearer headers, which beat `name = value` assignments.
    pub(crate) fn specificity(&self) -> u8 {
        match (
            self.spec.checksum.is_some(),
            self.spec.check,
            self.spec.generic,
        ) {
            (true, _, _) => 4,
            (false, Some(Check::PasswordAssignment | Check::SecretAssignment), _) => 0,
            (false, Some(Check::Bearer), _) => 1,
            (false, Some(Check::Jwt | Check::BasicAuth | Check::UrlCredentials), _)
            | (false, None, true) => 2,
            (false, None, false) => 3,
        }
    }
}

/// The groups of one match of a rule's pattern, as spans of the haystack searched.
#[derive(Clone, Copy)]
pub struct Groups<'a> {
    hay: &'a [u8],
    caps: &'a regex_automata::util::captures::Captures,
}

/// One group of a match: where it lies in the haystack, and its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group<'a> {
    start: usize,
    end: usize,
    bytes: &'a [u8],
}

impl<'a> Group<'a> {
    pub fn start(&self) -> usize {
        self.start
    }
    pub fn end(&self) -> usize {
        self.end
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl<'a> Groups<'a> {
    /// `caps` must hold a match of a search of `hay`.
    pub(crate) fn new(
        hay: &'a [u8],
        caps: &'a regex_automata::util::captures::Captures,
    ) -> Groups<'a> {
        Groups { hay, caps }
    }

    fn group(&self, span: Option<regex_automata::Span>) -> Option<Group<'a>> {
        span.map(|s| Group {
            start: s.start,
            end: s.end,
            bytes: &self.hay[s.range()],
        })
    }

    /// Group `index` (0 is the whole match), if it took part in the match.
    pub fn get(&self, index: usize) -> Option<Group<'a>> {
        self.group(self.caps.get_group(index))
    }

    /// The group called `name`, if the pattern has it and it took part.
    pub fn name(&self, name: &str) -> Option<Group<'a>> {
        self.group(self.caps.get_group_by_name(name))
    }
}
#[cfg(test)]
mod tests {
    use super::Rule;

    fn prefix_literals(id: &str) -> Option<Vec<Vec<u8>>> {
        let spec = crate::engine::builtin_specs()
            .into_iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no rule {id}"));
        Rule::compile(spec).unwrap().selective_prefix
    }

    fn selective(id: &str) -> bool {
        prefix_literals(id).is_some()
    }

    #[test]
    fn a_prefilter_is_kept_only_where_its_literals_outreach_the_keywords() {
        // `PuTTY-User-Key-File-2` / `-3` against the keyword `PuTTY-User-Key-File-`.
        // The version digit is in every literal (the engine's own choice would
        // cut them down to the keyword, their common prefix).
        let lits = prefix_literals("private-key-putty").expect("a selective prefix");
        for version in [&b"PuTTY-User-Key-File-2"[..], b"PuTTY-User-Key-File-3"] {
            assert!(lits.iter().any(|l| l.starts_with(version)), "{lits:?}");
        }
        assert!(lits
            .iter()
            .all(|l| l.starts_with(b"PuTTY-User-Key-File-2")
                || l.starts_with(b"PuTTY-User-Key-File-3")));
        assert!(selective("private-key-rsa"));
        // The literal would be the keyword itself, or short.
        assert!(!selective("secret-xml-element"));
        assert!(!selective("github-classic-pat"));
        assert!(!selective("anthropic-api-key"));
    }
}
