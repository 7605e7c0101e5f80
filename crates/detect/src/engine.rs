//! The matching engine: one Aho-Corasick pass over the keywords of every rule picks
//! the rules that can match at all; only those run their regex.

use crate::decode::{self, Encoding};
use crate::rule::{Confidence, Rule, RuleError, RuleFile, RuleSpec};
use crate::validate;
use aho_corasick::automaton::Automaton;
use aho_corasick::{dfa::DFA, Anchored, MatchKind};
use std::collections::HashSet;
use std::sync::OnceLock;

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/rule_files.rs"));
}

/// Decoded text nested deeper than this is not decoded again (base64 inside JSON
/// escapes is fine; unbounded nesting is a denial of service).
const MAX_DECODE_DEPTH: u8 = 2;

/// One secret found in a haystack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Index of the rule in [`Detector::rules`].
    pub rule: usize,
    /// Byte span of the secret in the haystack. For a secret found inside a base64
    /// region this is the whole encoded region.
    pub start: usize,
    pub end: usize,
    /// The secret itself (decoded when it was found inside an encoding).
    pub secret: Vec<u8>,
    /// The encoding the secret was found under, if any.
    pub encoding: Option<Encoding>,
    /// How sure the finding is, and why.
    pub confidence: Confidence,
    pub reason: &'static str,
    /// Facts read from the secret (a JWT's issuer and expiry), if any.
    pub note: Option<String>,
}

impl Finding {
    /// The finding for an accepted candidate of rule `rule` at `hay[start..end]`.
    fn accepted(
        rule: usize,
        hay: &[u8],
        (start, end): (usize, usize),
        v: validate::Verdict,
    ) -> Finding {
        Finding {
            rule,
            start,
            end,
            secret: hay[start..end].to_vec(),
            encoding: None,
            confidence: v.confidence,
            reason: v.reason,
            note: v.note,
        }
    }
}

/// Work done by one search, in bytes: what the keyword pass walked (decoded
/// regions included), what rule regexes were asked to search (one byte per keyword
/// occurrence for rules whose candidates are read in code), and the length of the
/// matches and candidates they produced (each then runs its checks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    pub scanned: usize,
    pub searched: usize,
    pub matched: usize,
}

/// Compiled rules plus the keyword prefilter. Cheap to share across threads.
#[derive(Debug)]
pub struct Detector {
    rules: Vec<Rule>,
    /// Every keyword, ASCII case folded: a DFA driven by [`Detector::for_each_keyword`].
    prefilter: DFA,
    /// For each prefilter pattern, the rules whose keyword it is.
    keyword_rules: Vec<Vec<KeywordOf>>,
    /// For each prefilter pattern, the longest match of any of its rules (bytes;
    /// `usize::MAX` when a rule is unbounded).
    keyword_reach: Vec<usize>,
    /// Length of the longest keyword.
    max_keyword_len: usize,
    decode: bool,
    /// For streaming redaction; built on first use.
    prefixes: OnceLock<crate::stream::Prefixes>,
}

/// A rule a keyword belongs to.
#[derive(Debug)]
struct KeywordOf {
    rule: u32,
    /// The keyword as the rule wrote it, when only that spelling counts
    /// ([`RuleSpec::keywords_case_sensitive`]).
    exact: Option<Box<[u8]>>,
}

impl KeywordOf {
    /// Whether the occurrence `found` of the keyword is one the rule searches around.
    #[inline]
    fn counts(&self, found: &[u8]) -> bool {
        // Keywords are a few bytes long: a loop inline, not a call to `memcmp`
        // for every occurrence (a tenth of a search of `--user ` repeated).
        self.exact.as_deref().is_none_or(|exact| {
            exact.len() == found.len() && exact.iter().zip(found).all(|(a, b)| a == b)
        })
    }
}

/// The vectors one search fills and empties, kept per thread between searches:
/// text dense with keywords fills megabytes of them, and memory freshly mapped
/// for each search is faulted in page by page (a quarter of the time of such a
/// search, measured under the system allocator). Nested searches of decoded
/// regions take their own.
#[derive(Default)]
struct Scratch {
    /// Keyword occurrences per rule index, in order: (start, end).
    hits: Vec<Vec<(usize, usize)>>,
    /// The rules with occurrences in `hits`, with the capacity their vector
    /// had before this search.
    touched: Vec<(u32, usize)>,
    /// Where keyword occurrences start: decoding uses them to tell which escapes
    /// glue a letter to a token.
    keyword_starts: Vec<usize>,
    /// Bytes of capacity in `hits` as of the last search given back.
    hits_bytes: usize,
}

/// A thread keeps scratch vectors of at most this many bytes between searches.
const MAX_KEPT_SCRATCH: usize = 32 << 20;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<Scratch>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Scratch {
    /// Empty vectors, reused when this thread has some.
    fn take() -> Scratch {
        SCRATCH
            .with(|pool| pool.borrow_mut().pop())
            .unwrap_or_default()
    }

    /// Empties the vectors and keeps them for the thread's next search, unless
    /// they hold more than [`MAX_KEPT_SCRATCH`].
    fn give_back(mut self) {
        let hit = std::mem::size_of::<(usize, usize)>();
        for &(r, before) in &self.touched {
            let v = &mut self.hits[r as usize];
            self.hits_bytes += (v.capacity() - before) * hit;
            v.clear();
        }
        let bytes = self.hits_bytes
            + self.hits.capacity() * std::mem::size_of::<Vec<(usize, usize)>>()
            + self.keyword_starts.capacity() * std::mem::size_of::<usize>();
        if bytes > MAX_KEPT_SCRATCH {
            return;
        }
        self.touched.clear();
        self.keyword_starts.clear();
        SCRATCH.with(|pool| pool.borrow_mut().push(self));
    }
}

/// How a rule's candidates are read in code at each keyword occurrence, for
/// rules that say so ([`RuleSpec::parse`]) instead of running their regex.
enum InCode {
    Url,
    Jwt,
    Basic,
    /// An assignment shape read by the function, judged by the check.
    Assignment(
        fn(&[u8], usize, usize) -> Option<crate::assign::Candidate>,
        crate::rule::Check,
    ),
}

impl InCode {
    /// `None` when the rule runs its regex (assignment shapes need a check).
    fn of(rule: &Rule) -> Option<InCode> {
        use crate::rule::Parse;
        let read: fn(&[u8], usize, usize) -> Option<crate::assign::Candidate> =
            match rule.spec.parse? {
                Parse::Url => return Some(InCode::Url),
                Parse::Jwt => return Some(InCode::Jwt),
                Parse::Basic => return Some(InCode::Basic),
                Parse::Assignment => crate::assign::parse_at,
                Parse::Flag => crate::assign::flag_at,
                Parse::XmlElement => crate::assign::xml_element_at,
            };
        rule.spec.check.map(|check| InCode::Assignment(read, check))
    }

    /// The finding's span and verdict for the candidate at the keyword
    /// occurrence `hay[ks..ke]`, if it is one; adds the bytes read to `matched`.
    fn read(
        &self,
        hay: &[u8],
        (ks, ke): (usize, usize),
        runs: &mut crate::assign::ValueRuns,
        matched: &mut usize,
    ) -> Option<((usize, usize), validate::Verdict)> {
        match self {
            InCode::Url => {
                let url = crate::structural::url_at(hay, ks)?;
                *matched += url.host_start - ks;
                let v = validate::judge_url(hay, &url)?;
                Some((v.span.unwrap_or(url.password), v))
            }
            InCode::Jwt => {
                if !crate::structural::jwt_starts_at(hay, ks, ke) {
                    return None;
                }
                let v = validate::judge_jwt(hay, ks)?;
                let span = v.span.unwrap_or((ks, ke));
                *matched += span.1 - span.0;
                Some((span, v))
            }
            InCode::Basic => {
                let span = crate::structural::basic_at(hay, ke)?;
                *matched += span.1 - ks;
                let v = validate::judge_basic(hay, span)?;
                Some((span, v))
            }
            InCode::Assignment(read, check) => {
                let c = read(hay, ks, ke)?;
                *matched += c.value.1 - ks;
                let v = validate::judge_assignment(*check, hay, &c, runs)?;
                Some((v.span.unwrap_or(c.value), v))
            }
        }
    }
}

/// True when the next occurrence of a rule read in code starts where `(ks, ke)`
/// does and extends it with letters and digits only (`pw` then `pwd`): every
/// reader extends a name over such bytes, so the longer occurrence yields the
/// same candidate, or one where the shorter yields none (the name-length limits
/// count from the keyword's end), and reading both would judge one name twice.
fn reads_the_same_longer(
    hay: &[u8],
    (ks, ke): (usize, usize),
    next: Option<&(usize, usize)>,
) -> bool {
    next.is_some_and(|&(ns, ne)| {
        ns == ks && ne > ke && hay[ke..ne].iter().all(u8::is_ascii_alphanumeric)
    })
}

/// Sorts keyword occurrences that arrived in order of where they end, by where
/// they start. An occurrence is out of place only by the occurrences that lie
/// inside its own span (at most the longest keyword's length times the keywords
/// ending at one byte), so an insertion sort is linear in their number. A
/// general sort was not: text that repeats a keyword holding a shorter one of
/// the same rule (`--user` holds `-u`) put every pair out of order, and its sort
/// was a quarter of such a search (5.2x ordinary text then, 3.1x now).
fn sort_nearly_sorted<T: Ord + Copy>(v: &mut [T]) {
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && v[j - 1] > x {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
    }
}

/// Why a detector could not be built.
#[derive(Debug)]
pub enum BuildError {
    Parse { file: String, reason: String },
    Rule(RuleError),
    DuplicateId(String),
    UnknownId(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Parse { file, reason } => write!(f, "rule file {file}: {reason}"),
            BuildError::Rule(e) => write!(f, "{e}"),
            BuildError::DuplicateId(id) => {
                write!(f, "two rules share the id `{id}`: ids must be unique")
            }
            BuildError::UnknownId(id) => write!(
                f,
                "no rule has the id `{id}` (see `keyward rules` for the list)"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// Parses rule specs from TOML text (`[[rule]]` tables).
pub fn parse_rules(file: &str, text: &str) -> Result<Vec<RuleSpec>, BuildError> {
    toml::from_str::<RuleFile>(text)
        .map(|f| f.rule)
        .map_err(|e| BuildError::Parse {
            file: file.to_string(),
            reason: e.to_string(),
        })
}

/// The specs of every built-in rule, in file order.
pub fn builtin_specs() -> Vec<RuleSpec> {
    builtin::RULE_FILES
        .iter()
        .flat_map(|(name, text)| parse_rules(name, text).unwrap_or_else(|e| panic!("embedded {e}")))
        .collect()
}

/// Chooses rules for a [`Detector`].
#[derive(Debug, Default)]
pub struct DetectorBuilder {
    extra: Vec<RuleSpec>,
    disabled: Vec<String>,
    no_builtin: bool,
    no_decode: bool,
}

impl DetectorBuilder {
    /// Adds rules (for example from a user's config file).
    pub fn add_rules(mut self, rules: impl IntoIterator<Item = RuleSpec>) -> Self {
        self.extra.extend(rules);
        self
    }
    /// Turns off rules by id. Naming an id that does not exist is an error at build.
    pub fn disable(mut self, ids: impl IntoIterator<Item = String>) -> Self {
        self.disabled.extend(ids);
        self
    }
    /// Leaves out the built-in rules.
    pub fn without_builtin(mut self) -> Self {
        self.no_builtin = true;
        self
    }
    /// Skips decoding of base64, percent and JSON-escaped regions.
    pub fn without_decoding(mut self) -> Self {
        self.no_decode = true;
        self
    }
    pub fn build(self) -> Result<Detector, BuildError> {
        let mut specs = if self.no_builtin {
            Vec::new()
        } else {
            builtin_specs()
        };
        // User rules are compiled now so that a bad one is reported at start-up;
        // built-in ones are compiled by a test and lazily on first use.
        let user_ids: HashSet<String> = self.extra.iter().map(|s| s.id.clone()).collect();
        specs.extend(self.extra);
        let mut seen = HashSet::new();
        for s in &specs {
            if !seen.insert(s.id.clone()) {
                return Err(BuildError::DuplicateId(s.id.clone()));
            }
        }
        for id in &self.disabled {
            if !seen.contains(id) {
                return Err(BuildError::UnknownId(id.clone()));
            }
        }
        let rules = specs
            .into_iter()
            .filter(|s| !self.disabled.contains(&s.id))
            .map(|spec| {
                let eager = user_ids.contains(&spec.id);
                let rule = Rule::compile(spec)?;
                if eager {
                    rule.compile_now()?;
                }
                Ok(rule)
            })
            .collect::<Result<Vec<_>, RuleError>>()
            .map_err(BuildError::Rule)?;
        Ok(Detector::from_rules(rules, !self.no_decode))
    }
}

impl Detector {
    /// The detector with every built-in rule, built once per process.
    pub fn builtin() -> &'static Detector {
        static D: OnceLock<Detector> = OnceLock::new();
        D.get_or_init(|| {
            DetectorBuilder::default()
                .build()
                .expect("built-in rules are valid")
        })
    }

    fn from_rules(rules: Vec<Rule>, decode: bool) -> Detector {
        let mut keywords: Vec<Vec<u8>> = Vec::new();
        let mut keyword_rules: Vec<Vec<KeywordOf>> = Vec::new();
        for (ri, rule) in rules.iter().enumerate() {
            for kw in &rule.spec.keywords {
                let of = KeywordOf {
                    rule: ri as u32,
                    exact: rule
                        .spec
                        .keywords_case_sensitive
                        .then(|| kw.as_bytes().into()),
                };
                let kw = kw.to_ascii_lowercase().into_bytes();
                match keywords.iter().position(|k| *k == kw) {
                    Some(p) => keyword_rules[p].push(of),
                    None => {
                        keywords.push(kw);
                        keyword_rules.push(vec![of]);
                    }
                }
            }
        }
        // A full DFA (a few hundred KB for a few hundred keywords) used through its
        // concrete type, so that the per-byte step inlines into our own loop; the
        // generic overlapping iterator goes through dynamic dispatch on every byte.
        // No built-in prefilter: with hundreds of case-folded keywords it could
        // not skip anything, and it would make the start state special.
        let prefilter = aho_corasick::dfa::Builder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(&keywords)
            .expect("keyword automaton builds");
        let keyword_reach = keyword_rules
            .iter()
            .map(|rs| {
                rs.iter()
                    .map(|of| rules[of.rule as usize].reach().unwrap_or(usize::MAX))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        Detector {
            rules,
            prefilter,
            keyword_reach,
            max_keyword_len: keywords.iter().map(Vec::len).max().unwrap_or(0),
            keyword_rules,
            decode,
            prefixes: OnceLock::new(),
        }
    }

    /// Whether base64 and percent-encoded regions are decoded and searched.
    pub(crate) fn decodes(&self) -> bool {
        self.decode
    }

    /// Builds what streaming redaction needs now rather than on the first stream
    /// (tens of milliseconds for the built-in rules).
    pub fn prepare_streaming(&self) {
        self.prefixes();
    }

    /// The prefix automaton for streaming redaction.
    pub(crate) fn prefixes(&self) -> &crate::stream::Prefixes {
        self.prefixes
            .get_or_init(|| crate::stream::Prefixes::build(&self.rules))
    }

    /// Keyword occurrences in `hay[from..]` as `(start, end, reach)`: any match
    /// containing the occurrence lies within `reach` bytes of it.
    pub(crate) fn keyword_hits(&self, hay: &[u8], from: usize) -> Vec<(usize, usize, usize)> {
        let mut hits = Vec::new();
        self.for_each_keyword(hay, from, |start, end, keyword| {
            hits.push((start, end, self.keyword_reach[keyword]))
        });
        hits
    }

    /// Calls `f(start, end, keyword)` for every keyword occurrence in `hay[from..]`,
    /// overlapping ones included, in order of where they end.
    ///
    /// A DFA step waits on the previous one (a table load per byte), so one walk
    /// is bound by load latency, not by the work per byte. Longer inputs are cut
    /// into four parts walked in lockstep: four independent chains the CPU runs
    /// side by side. Each part's walk starts `max_keyword_len - 1` bytes early,
    /// reporting nothing there, so that an occurrence ending in the part is seen
    /// whole; each occurrence is reported by exactly one part, the one it ends in.
    /// The first part reports as it goes; the others' occurrences are held and
    /// reported after it, in part order.
    fn for_each_keyword(&self, hay: &[u8], from: usize, mut f: impl FnMut(usize, usize, usize)) {
        /// Parts shorter than this are not worth their warm-up.
        const MIN_PART: usize = 96;
        let from = from.min(hay.len());
        let part = (hay.len() - from) / 4;
        if part < MIN_PART {
            let state = self.keyword_start();
            self.walk_keywords(hay, from, state, &mut f);
            return;
        }
        let dfa = &self.prefilter;
        let starts = [from, from + part, from + 2 * part, from + 3 * part];
        let mut states = starts.map(|at| {
            let warm_from = at
                .saturating_sub(self.max_keyword_len.saturating_sub(1))
                .max(from);
            hay[warm_from..at]
                .iter()
                .fold(self.keyword_start(), |state, &byte| {
                    dfa.next_state(Anchored::No, state, byte)
                })
        });
        let mut held: [Vec<(usize, usize, usize)>; 3] = Default::default();
        let lane = |k: usize| &hay[starts[k]..starts[k] + part];
        let bytes = lane(0).iter().zip(lane(1)).zip(lane(2)).zip(lane(3));
        for (step, (((&b0, &b1), &b2), &b3)) in bytes.enumerate() {
            let next = [
                dfa.next_state(Anchored::No, states[0], b0),
                dfa.next_state(Anchored::No, states[1], b1),
                dfa.next_state(Anchored::No, states[2], b2),
                dfa.next_state(Anchored::No, states[3], b3),
            ];
            states = next;
            if next.iter().any(|&state| dfa.is_special(state)) {
                self.report_keywords(next[0], starts[0] + step, &mut f);
                for (k, held) in held.iter_mut().enumerate() {
                    self.report_keywords(next[k + 1], starts[k + 1] + step, &mut |s, e, kw| {
                        held.push((s, e, kw))
                    });
                }
            }
        }
        for (s, e, kw) in held.into_iter().flatten() {
            f(s, e, kw);
        }
        // The last part also takes what the division left over.
        self.walk_keywords(hay, starts[3] + part, states[3], &mut f);
    }

    fn keyword_start(&self) -> aho_corasick::automaton::StateID {
        self.prefilter
            .start_state(Anchored::No)
            .expect("the keyword DFA searches unanchored")
    }

    /// One walk over `hay[from..]` from `state`, reporting as it goes.
    #[inline]
    fn walk_keywords(
        &self,
        hay: &[u8],
        from: usize,
        mut state: aho_corasick::automaton::StateID,
        f: &mut impl FnMut(usize, usize, usize),
    ) {
        for (i, &byte) in hay.iter().enumerate().skip(from) {
            state = self.prefilter.next_state(Anchored::No, state, byte);
            if self.prefilter.is_special(state) {
                self.report_keywords(state, i, f);
            }
        }
    }

    /// Reports the keywords that end at `hay[at]` if `state`, reached on that
    /// byte, is a match state.
    #[inline]
    fn report_keywords(
        &self,
        state: aho_corasick::automaton::StateID,
        at: usize,
        f: &mut impl FnMut(usize, usize, usize),
    ) {
        let dfa = &self.prefilter;
        // Without a prefilter, and with no empty keyword, the only special states
        // an unanchored walk reaches are match states.
        if dfa.is_match(state) {
            for n in 0..dfa.match_len(state) {
                let keyword = dfa.match_pattern(state, n);
                f(
                    at + 1 - dfa.pattern_len(keyword),
                    at + 1,
                    keyword.as_usize(),
                );
            }
        }
    }

    pub(crate) fn max_keyword_len(&self) -> usize {
        self.max_keyword_len
    }

    /// Heap bytes used by the keyword automaton.
    pub fn prefilter_memory(&self) -> usize {
        self.prefilter.memory_usage()
    }

    /// All rules, in the order findings index them.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule a finding came from.
    pub fn rule(&self, f: &Finding) -> &Rule {
        &self.rules[f.rule]
    }

    /// Finds every secret in `hay`, sorted by position, overlaps resolved in favour
    /// of the more specific rule.
    pub fn find(&self, hay: &[u8]) -> Vec<Finding> {
        self.find_with(hay, 0, true)
    }

    /// What [`Detector::find`] does for `hay`, counted: the work of a search is
    /// linear in its input, and this is how tests hold it to that.
    pub fn work(&self, hay: &[u8]) -> Work {
        let mut work = Work::default();
        self.find_into(hay, 0, true, &mut Vec::new(), &mut work);
        work
    }

    /// Like [`Detector::find`] for text already taken out of JSON strings (a chat
    /// message, a streamed delta): JSON escape sequences are not decoded again.
    pub fn find_unescaped(&self, hay: &[u8]) -> Vec<Finding> {
        self.find_with(hay, 0, false)
    }

    /// Findings that start at or after `from`; the bytes before it are context only
    /// (look-behind for `\b` and the like). Matches starting earlier are dropped
    /// before overlaps are resolved, so they cannot shadow later ones.
    pub(crate) fn find_with(&self, hay: &[u8], from: usize, json_escapes: bool) -> Vec<Finding> {
        let mut out = Vec::new();
        self.find_into(hay, 0, json_escapes, &mut out, &mut Work::default());
        if from > 0 {
            out.retain(|f| f.start >= from);
        }
        resolve_overlaps(&self.rules, &mut out);
        out
    }

    /// Like [`find_with`](Self::find_with), but a finding that starts at or
    /// after `since` and before `from`, and ends after `from`, is kept, cut to
    /// start at `from`.
    pub(crate) fn find_straddling(&self, hay: &[u8], from: usize, since: usize) -> Vec<Finding> {
        let mut out = Vec::new();
        self.find_into(hay, 0, false, &mut out, &mut Work::default());
        out.retain_mut(|f| {
            if f.start < from && f.start >= since && f.end > from {
                f.start = from;
            }
            f.start >= from
        });
        resolve_overlaps(&self.rules, &mut out);
        out
    }

    fn find_into(
        &self,
        hay: &[u8],
        depth: u8,
        json_escapes: bool,
        out: &mut Vec<Finding>,
        work: &mut Work,
    ) {
        work.scanned += hay.len();
        let mut scratch = Scratch::take();
        let Scratch {
            hits,
            touched,
            keyword_starts,
            ..
        } = &mut scratch;
        if hits.len() < self.rules.len() {
            hits.resize_with(self.rules.len(), Vec::new);
        }
        self.for_each_keyword(hay, 0, |start, end, keyword| {
            keyword_starts.push(start);
            for of in &self.keyword_rules[keyword] {
                if !of.counts(&hay[start..end]) {
                    continue;
                }
                let rule_hits = &mut hits[of.rule as usize];
                if rule_hits.is_empty() {
                    touched.push((of.rule, rule_hits.capacity()));
                }
                rule_hits.push((start, end));
            }
        });
        // Rules in index order, as findings are reported.
        touched.sort_unstable();
        for &(ri, _) in touched.iter() {
            let ri = ri as usize;
            let rule_hits = &mut hits[ri];
            // Keyword occurrences arrive in order of where they end; matches are
            // taken by where they start. Only keywords of different lengths ending
            // close together can be out of order (`--user` holds `-u`).
            if !rule_hits.windows(2).all(|w| w[0] <= w[1]) {
                sort_nearly_sorted(rule_hits);
            }
            let rule = &self.rules[ri];
            // Reports an accepted match; returns where its secret ends.
            let mut push = |caps: &crate::rule::Groups<'_>| -> usize {
                let Some(m) = caps.get(rule.secret_group) else {
                    return 0;
                };
                let Some(v) = validate::accept(rule, hay, caps) else {
                    return 0;
                };
                let span = v.span.unwrap_or((m.start(), m.end()));
                out.push(Finding::accepted(ri, hay, span, v));
                span.1
            };
            // Matches of one rule are taken in order, each search resuming where the
            // previous secret ended (not where its whole match ended): a match may
            // start inside the previous one's trailing context, so a secret there is
            // found now rather than only when the redacted text is scanned again.
            let resume_after = |caps: &crate::rule::Groups<'_>| {
                let whole = caps.get(0).expect("group 0 always matches");
                caps.get(rule.secret_group)
                    .map_or(whole.end(), |m| m.end())
                    .max(whole.start() + 1)
            };
            if let Some(reader) = InCode::of(rule) {
                let mut resume = 0;
                let mut runs = crate::assign::ValueRuns::default();
                for (i, &(ks, ke)) in rule_hits.iter().enumerate() {
                    if ks < resume || reads_the_same_longer(hay, (ks, ke), rule_hits.get(i + 1)) {
                        continue;
                    }
                    work.searched += 1;
                    let Some((span, v)) = reader.read(hay, (ks, ke), &mut runs, &mut work.matched)
                    else {
                        continue;
                    };
                    out.push(Finding::accepted(ri, hay, span, v));
                    resume = span.1;
                }
                continue;
            }
            let regex = rule.regex();
            let mut slots = regex.create_captures();
            match rule.max_len {
                Some(max_len) => {
                    let lead = rule.spec.max_lead.unwrap_or(max_len).min(max_len);
                    // Every match contains a keyword occurrence and is at most
                    // `max_len` long, so it lies within `max_len` of one. Occurrences
                    // whose windows touch are merged and their window searched once,
                    // every match in it taken in order: each byte is searched at most
                    // once per rule, however densely the keyword repeats. Look-around
                    // sees the bytes before the window; a few bytes past its end keep
                    // `\b` and `$` honest.
                    let mut i = 0;
                    let mut floor = 0;
                    while i < rule_hits.len() {
                        let (ks, ke) = rule_hits[i];
                        let from = ks.saturating_sub(lead).max(floor);
                        let mut to = (ke + max_len + 4).min(hay.len());
                        i += 1;
                        while i < rule_hits.len() && rule_hits[i].0.saturating_sub(lead) <= to {
                            to = to.max((rule_hits[i].1 + max_len + 4).min(hay.len()));
                            i += 1;
                        }
                        work.searched += to.saturating_sub(from);
                        let mut at = from;
                        while at < to {
                            let input = regex_automata::Input::new(&hay[..to]).range(at..);
                            regex.search_captures(&input, &mut slots);
                            if !slots.is_match() {
                                break;
                            }
                            let caps = crate::rule::Groups::new(hay, &slots);
                            work.matched += caps.get(0).map_or(0, |m| m.len());
                            let secret_end = push(&caps);
                            at = resume_after(&caps).max(secret_end);
                        }
                        floor = at.max(to);
                    }
                }
                None => {
                    work.searched += hay.len();
                    let mut at = 0;
                    while at <= hay.len() {
                        let input = regex_automata::Input::new(hay).range(at..);
                        regex.search_captures(&input, &mut slots);
                        if !slots.is_match() {
                            break;
                        }
                        let caps = crate::rule::Groups::new(hay, &slots);
                        work.matched += caps.get(0).map_or(0, |m| m.len());
                        let secret_end = push(&caps);
                        at = resume_after(&caps).max(secret_end);
                    }
                }
            }
        }
        if self.decode && depth < MAX_DECODE_DEPTH {
            // Sorted only if some escape needs it: most inputs have none.
            let sorted = std::cell::OnceCell::new();
            let glued = |at: usize| {
                sorted
                    .get_or_init(|| {
                        let mut v = keyword_starts.clone();
                        sort_nearly_sorted(&mut v);
                        v
                    })
                    .binary_search(&at)
                    .is_ok()
            };
            decode::for_each_region(hay, json_escapes, glued, |d| {
                let mut inner = Vec::new();
                self.find_into(&d.bytes, depth + 1, json_escapes, &mut inner, work);
                for f in inner {
                    let (start, end) = d.original_span(f.start, f.end);
                    out.push(Finding {
                        start,
                        end,
                        encoding: Some(f.encoding.unwrap_or(d.encoding)),
                        ..f
                    });
                }
            });
        }
        scratch.give_back();
    }

    /// Returns `text` with every secret replaced by `[REDACTED:<rule-id>]`.
    /// Text without secrets is returned unchanged (and unallocated).
    pub fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        self.redact_findings(text, &self.find(text.as_bytes()))
    }

    /// [`Detector::redact`] for text already taken out of JSON strings: JSON escape
    /// sequences are not decoded again. The streaming redactor matches this.
    pub fn redact_unescaped<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        self.redact_findings(text, &self.find_unescaped(text.as_bytes()))
    }

    /// `text` with the given findings (sorted, non-overlapping, from a search of
    /// `text`) replaced by markers.
    pub(crate) fn redact_findings<'a>(
        &self,
        text: &'a str,
        findings: &[Finding],
    ) -> std::borrow::Cow<'a, str> {
        if findings.is_empty() {
            return std::borrow::Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let end = self.write_redacted(text, 0, text.len(), findings, &mut out);
        out.push_str(&text[end..]);
        std::borrow::Cow::Owned(out)
    }

    /// Appends `text[from..upto]` to `out` with findings replaced by markers, and
    /// returns where copying stopped: `upto`, or later when the last finding (widened
    /// to char boundaries) ends past it. Findings must be sorted and start at or
    /// after `from`; those starting at or after `upto` are ignored.
    pub(crate) fn write_redacted(
        &self,
        text: &str,
        from: usize,
        upto: usize,
        findings: &[Finding],
        out: &mut String,
    ) -> usize {
        let mut pos = from;
        for f in findings.iter().filter(|f| f.start < upto) {
            // Spans come from byte regexes over UTF-8 text; widen to char boundaries
            // so the result stays valid UTF-8.
            let mut start = f.start.max(pos);
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = f.end.max(start);
            while !text.is_char_boundary(end) {
                end += 1;
            }
            if start < pos {
                continue;
            }
            out.push_str(&text[pos..start]);
            out.push_str("[REDACTED:");
            out.push_str(self.rules[f.rule].id());
            out.push(']');
            pos = end;
        }
        if pos < upto {
            out.push_str(&text[pos..upto]);
            pos = upto;
        }
        pos
    }
}

/// Sorts findings by position and removes duplicates: of findings whose spans
/// overlap, the most specific rule wins (then the longer span, then the earlier rule).
fn resolve_overlaps(rules: &[Rule], v: &mut Vec<Finding>) {
    v.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(
                rules[b.rule]
                    .specificity()
                    .cmp(&rules[a.rule].specificity()),
            )
            .then(b.end.cmp(&a.end))
            .then(a.rule.cmp(&b.rule))
    });
    let mut kept: Vec<Finding> = Vec::with_capacity(v.len());
    for f in v.drain(..) {
        if let Some(last) = kept.last_mut() {
            if f.start < last.end {
                let better = (rules[f.rule].specificity(), f.end - f.start)
                    > (rules[last.rule].specificity(), last.end - last.start);
                if better {
                    *last = f;
                }
                continue;
            }
        }
        kept.push(f);
    }
    *v = kept;
}

#[cfg(test)]
mod tests {
    use super::Detector;
    use proptest::prelude::*;

    proptest! {
        /// The insertion sort sorts whatever it is given (quickly only when it
        /// is nearly sorted, as keyword occurrences are).
        #[test]
        fn nearly_sorted_sorts_anything(mut v in proptest::collection::vec((0usize..50, 0usize..50), 0..200)) {
            let mut expected = v.clone();
            expected.sort();
            super::sort_nearly_sorted(&mut v);
            prop_assert_eq!(v, expected);
        }
    }

    fn one_walk(d: &Detector, hay: &[u8], from: usize) -> Vec<(usize, usize, usize)> {
        let mut v = Vec::new();
        d.walk_keywords(hay, from, d.keyword_start(), &mut |s, e, k| {
            v.push((s, e, k))
        });
        v.sort_unstable();
        v
    }

    fn lockstep(d: &Detector, hay: &[u8], from: usize) -> Vec<(usize, usize, usize)> {
        let mut v = Vec::new();
        d.for_each_keyword(hay, from, |s, e, k| v.push((s, e, k)));
        v.sort_unstable();
        v
    }

    proptest! {
        /// Cutting the input into parts walked in lockstep finds exactly the
        /// occurrences one walk finds: none lost or doubled at a cut.
        #[test]
        fn lockstep_walk_finds_what_one_walk_finds(
            pieces in proptest::collection::vec(
                prop_oneof![
                    Just("ghp_"), Just("GHP_"), Just("sk-proj-"), Just("sk-"), Just("postgres://"),
                    Just("aws_secret"), Just("pat"), Just("x"), Just(" "), Just("eyJrIjoi"),
                    Just("abskqmvkcm9ja0fqsutles"), Just("0123456789"),
                ],
                0..300,
            ),
            from in 0usize..400,
        ) {
            let d = Detector::builtin();
            let hay = pieces.concat().into_bytes();
            let from = from.min(hay.len());
            prop_assert_eq!(lockstep(d, &hay, from), one_walk(d, &hay, from));
        }
    }

    #[test]
    fn occurrences_straddling_every_cut_are_found_once() {
        let d = Detector::builtin();
        let keyword = b"eyJ2ZXIiOiIyIiwidHlwIjoiSldUI"; // the longest keyword
        assert_eq!(keyword.len(), d.max_keyword_len);
        for len in [384usize, 400, 1000, 1001, 1002, 1003] {
            for at in 0..len - keyword.len() {
                let mut hay = vec![b'.'; len];
                hay[at..at + keyword.len()].copy_from_slice(keyword);
                let found = lockstep(d, &hay, 0);
                assert_eq!(found, one_walk(d, &hay, 0));
                assert!(found
                    .iter()
                    .any(|&(s, e, _)| s == at && e == at + keyword.len()));
            }
        }
    }
}
