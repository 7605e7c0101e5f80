//! Redaction of text that arrives in pieces, such as model output streamed as
//! server-sent events.
//!
//! A [`StreamRedactor`] releases text as soon as nothing after it can change how
//! it is redacted, and holds back only the tail that could still become part of
//! a secret. Whatever the chunking, the concatenated output equals
//! [`Detector::redact_unescaped`] of the whole text (see the property tests), with
//! one documented exception: an unbroken run of URL or base64 characters longer
//! than [`MAX_HOLD`] is released in pieces rather than held without bound. A block
//! of base64 wrapped across lines is held while another line may still join it
//! (the whole text's search decodes the block as one), within the same bound.
//!
//! [`StreamRedactor::prompt`] trades that exactness for latency where text is read
//! as it arrives (model output): a word at the end of a chunk (`Hello`, `from.`,
//! `42`) is released at once instead of being held in case the next chunk
//! continues it into a base64 or percent-encoded run. Should it be continued so, a
//! secret found in the decoded run is redacted from the first byte not yet
//! released: only that word, at most [`MAX_EARLY_WORD`] bytes, went out before.
//! Secrets with a recognisable start (`sk-`, `ghp_`, `AKIA`, `-----BEGIN`, …) are
//! held exactly as in the default mode.
//!
//! Deciding "could still become part of a secret" uses a prefix automaton: one
//! lazy DFA over every rule's pattern, run anchored at each candidate start. A
//! start whose automaton dies can never begin a match, whatever comes next, so
//! everything before the first start still alive is settled.

use crate::decode;
use crate::engine::{Detector, Finding};
use crate::rule::Rule;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::nfa::thompson;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::{Hir, HirKind, Repetition};
use std::sync::Mutex;

/// Longest tail held back for a run that decoding (base64, percent) might still
/// extend, and for rules whose patterns have no length bound.
pub const MAX_HOLD: usize = 64 << 10;

/// Longest word released early by [`StreamRedactor::prompt`]: shorter than any run
/// the decoders look at, so a word alone never decodes to anything.
pub const MAX_EARLY_WORD: usize = decode::MIN_BASE64_RUN - 1;

/// Whether `run` (URL-safe characters at the end of a chunk) reads as a word of
/// prose: letters with at most a leading capital (and a contraction such as
/// `'t`), or a number of up to six digits, then at most three of `. ! ? : '`.
fn reads_as_word(run: &[u8]) -> bool {
    let core_len = run.len()
        - run
            .iter()
            .rev()
            .take(3)
            .take_while(|b| matches!(b, b'.' | b'!' | b'?' | b':' | b'\''))
            .count();
    let core = &run[..core_len];
    // A contraction: `don't`, `it's`, `we're`.
    let (core, ending) = match core.iter().position(|&b| b == b'\'') {
        Some(i) => (&core[..i], &core[i + 1..]),
        None => (core, &[][..]),
    };
    let Some((first, rest)) = core.split_first() else {
        return false;
    };
    let letters = first.is_ascii_alphabetic()
        && rest.iter().all(u8::is_ascii_lowercase)
        && ending.len() <= 3
        && ending.iter().all(u8::is_ascii_lowercase);
    let number = ending.is_empty() && core.len() <= 6 && core.iter().all(u8::is_ascii_digit);
    run.len() <= MAX_EARLY_WORD && (letters || number)
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// In prompt mode, where the tail that is released without waiting begins: blanks
/// at the end, a word of prose before them (see [`reads_as_word`]; it may have
/// begun in released text) and the blanks before that word. `None` when the text
/// ends in anything else.
fn settled_tail(bytes: &[u8]) -> Option<usize> {
    let n = bytes.len();
    let mut from = n;
    while from > 0 && is_blank(bytes[from - 1]) {
        from -= 1;
    }
    let word = bytes[..from]
        .iter()
        .rev()
        .take(MAX_EARLY_WORD + 1)
        .take_while(|&&b| decode::may_extend_region(b))
        .count();
    if word > 0 {
        if !reads_as_word(&bytes[from - word..from]) {
            return (from < n).then_some(from);
        }
        from -= word;
        while from > 0 && is_blank(bytes[from - 1]) {
            from -= 1;
        }
    }
    (from < n).then_some(from)
}

/// Counted repetitions longer than this are widened to unbounded ones in the prefix
/// automaton. The language only grows, so the hold-back stays safe, and private-key
/// patterns with bounds in the thousands do not unroll into huge automata.
const WIDEN_OVER: u32 = 32;

/// The prefix automaton of a detector's rules, built on first use.
pub(crate) struct Prefixes {
    dfa: DFA,
    /// Lazy-DFA caches are a few hundred KB each: shared between streams.
    caches: Mutex<Vec<Cache>>,
    /// Longest match of any rule (or [`MAX_HOLD`]): a start further back than this
    /// cannot begin a match that is still growing.
    max_len: usize,
}

impl std::fmt::Debug for Prefixes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefixes")
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl Prefixes {
    pub(crate) fn build(rules: &[Rule]) -> Prefixes {
        let hirs: Vec<Hir> = rules
            .iter()
            .map(|r| {
                let hir = regex_syntax::ParserBuilder::new()
                    .utf8(false)
                    .unicode(false)
                    .build()
                    .parse(&r.spec.pattern)
                    .expect("rule patterns parsed when the rule was compiled");
                let widened = widen(&hir);
                if r.reads_past_match() {
                    // The check reads the rest of the line: a candidate stays
                    // alive until the line ends.
                    let rest_of_line = regex_syntax::ParserBuilder::new()
                        .utf8(false)
                        .unicode(false)
                        .build()
                        .parse(r"(?s-u:[^\r\n])*")
                        .expect("a fixed pattern parses");
                    Hir::concat(vec![widened, rest_of_line])
                } else {
                    widened
                }
            })
            .collect();
        let nfa = thompson::Compiler::new()
            .configure(thompson::Config::new().utf8(false).shrink(true))
            .build_many_from_hir(&hirs)
            .expect("widened rule patterns compile");
        // `All` keeps every thread alive, also those a leftmost-first search would
        // drop after an earlier match: a superset again, so still safe.
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .starts_for_each_pattern(false)
                    .cache_capacity(4 << 20),
            )
            .build_from_nfa(nfa)
            .expect("prefix automaton builds");
        let max_len = rules
            .iter()
            .map(|r| r.reach().unwrap_or(MAX_HOLD))
            .max()
            .unwrap_or(0)
            .min(MAX_HOLD);
        Prefixes {
            dfa,
            caches: Mutex::new(Vec::new()),
            max_len,
        }
    }

    fn take_cache(&self) -> Cache {
        self.caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_else(|| self.dfa.create_cache())
    }

    fn return_cache(&self, cache: Cache) {
        let mut pool = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        // Enough for the streams of a busy server; more are dropped.
        if pool.len() < 64 {
            pool.push(cache);
        }
    }
}

/// `hir` with long counted repetitions made unbounded and captures removed.
fn widen(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Repetition(r) => {
            let sub = Box::new(widen(&r.sub));
            let long = r.max.is_none_or(|m| m > WIDEN_OVER);
            Hir::repetition(Repetition {
                min: if long { r.min.min(WIDEN_OVER) } else { r.min },
                max: if long { None } else { r.max },
                greedy: r.greedy,
                sub,
            })
        }
        HirKind::Capture(c) => widen(&c.sub),
        HirKind::Concat(v) => Hir::concat(v.iter().map(widen).collect()),
        HirKind::Alternation(v) => Hir::alternation(v.iter().map(widen).collect()),
        _ => hir.clone(),
    }
}

/// Redacts a text that arrives in chunks. Feed chunks with [`push`](Self::push),
/// end with [`finish`](Self::finish); each call returns the text released so far,
/// already redacted.
pub struct StreamRedactor<'d> {
    detector: &'d Detector,
    prefixes: &'d Prefixes,
    cache: Option<Cache>,
    /// Released context (`..released`) followed by the pending text.
    buf: String,
    released: usize,
    /// Earliest start in `buf` that may still begin a match.
    cand: usize,
    /// Prefix-automaton state after reading `buf[cand..fed]`, once started.
    state: Option<LazyStateID>,
    fed: usize,
    /// Keyword occurrences in `buf` as `(start, end, reach)`, found as text
    /// arrives; `buf[..scanned]` has been searched.
    keywords: Vec<(usize, usize, usize)>,
    scanned: usize,
    /// Rule indices of the secrets redacted so far.
    hits: Vec<usize>,
    /// Release a word at the end of a chunk at once (see [`StreamRedactor::prompt`]).
    words_early: bool,
    /// Where the earliest tail released early (prompt mode) begins: only a secret
    /// starting there or later may straddle `released`.
    early_from: Option<usize>,
}

impl<'d> StreamRedactor<'d> {
    /// A redactor whose output equals redacting the whole text, however it is cut.
    pub fn new(detector: &'d Detector) -> StreamRedactor<'d> {
        Self::with_mode(detector, false)
    }

    /// A redactor for text read as it arrives: the same, except that a word of
    /// prose at the end of a chunk is released at once (see the module notes).
    pub fn prompt(detector: &'d Detector) -> StreamRedactor<'d> {
        Self::with_mode(detector, true)
    }

    fn with_mode(detector: &'d Detector, words_early: bool) -> StreamRedactor<'d> {
        let prefixes = detector.prefixes();
        StreamRedactor {
            detector,
            prefixes,
            cache: Some(prefixes.take_cache()),
            buf: String::new(),
            released: 0,
            cand: 0,
            state: None,
            fed: 0,
            keywords: Vec::new(),
            scanned: 0,
            hits: Vec::new(),
            words_early,
            early_from: None,
        }
    }

    /// Adds a chunk; returns the redacted text that can now be released (often all
    /// of it, sometimes nothing).
    pub fn push(&mut self, chunk: &str) -> String {
        let mut out = String::new();
        self.push_into(chunk, &mut out);
        out
    }

    /// [`push`](Self::push), appending to `out`.
    pub fn push_into(&mut self, chunk: &str, out: &mut String) {
        if chunk.is_empty() {
            return;
        }
        self.buf.push_str(chunk);
        self.scan_keywords();
        self.advance();
        self.release(out);
    }

    /// Ends the text: returns everything still held, redacted. The redactor is
    /// empty afterwards and may be reused for a new text.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        let findings = self.find_pending();
        let len = self.buf.len();
        self.write(&findings, len, &mut out);
        self.buf.clear();
        self.released = 0;
        self.cand = 0;
        self.fed = 0;
        self.state = None;
        self.keywords.clear();
        self.scanned = 0;
        self.early_from = None;
        out
    }

    /// Bytes received but not yet released.
    pub fn held(&self) -> usize {
        self.buf.len() - self.released
    }

    /// Ids of the rules whose secrets were redacted since the last call, one entry
    /// per secret.
    pub fn take_hits(&mut self) -> Vec<&'d str> {
        let rules = self.detector.rules();
        self.hits.drain(..).map(|r| rules[r].id()).collect()
    }

    /// Records keyword occurrences in the newly arrived text (and any that
    /// straddle its start).
    fn scan_keywords(&mut self) {
        let from = self
            .scanned
            .saturating_sub(self.detector.max_keyword_len().saturating_sub(1));
        let scanned = self.scanned;
        self.keywords.extend(
            self.detector
                .keyword_hits(self.buf.as_bytes(), from)
                .into_iter()
                .filter(|&(_, end, _)| end > scanned),
        );
        self.scanned = self.buf.len();
    }

    /// Whether the full search can be skipped for `buf[released..cut]`: no
    /// keyword occurrence is near enough for a match to reach it, and no run a
    /// decoder would look at (base64-sized, or holding `%`) touches it. Then no
    /// secret starts in it, so it is released as it is.
    fn nothing_to_find(&self, cut: usize) -> bool {
        let released = self.released;
        let near = self.keywords.iter().any(|&(start, end, reach)| {
            end.saturating_sub(reach) < cut && start.saturating_add(reach) > released
        });
        if near {
            return false;
        }
        if !self.detector.decodes() {
            return true;
        }
        let bytes = self.buf.as_bytes();
        let mut i = released;
        while i > 0 && decode::may_extend_region(bytes[i - 1]) {
            i -= 1;
        }
        while i < cut {
            if !decode::may_extend_region(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && decode::may_extend_region(bytes[i]) {
                i += 1;
            }
            if i - start >= decode::MIN_BASE64_RUN || bytes[start..i].contains(&b'%') {
                return false;
            }
        }
        true
    }

    /// Moves `cand` to the first start that may still begin a match.
    fn advance(&mut self) {
        let bytes = self.buf.as_bytes();
        let n = bytes.len();
        // In prompt mode, where a tail of prose begins: starts inside it are not
        // waited for, and no decoder needs it held.
        let word_from = if self.words_early {
            settled_tail(bytes)
        } else {
            None
        };
        // A base64 or percent region touching the end may still grow.
        let mut limit = n;
        if self.detector.decodes() && word_from.is_none() {
            let run = bytes[self.released..]
                .iter()
                .rev()
                .take_while(|&&b| decode::may_extend_region(b))
                .count();
            if run <= MAX_HOLD {
                limit = n - run;
            }
            // So may a block of base64 wrapped across lines: its lines are decoded
            // as one, so none of them is settled while another may follow.
            if let Some(first) = decode::open_wrapped_block(&bytes[self.released..]) {
                if n - (self.released + first) <= MAX_HOLD {
                    limit = limit.min(self.released + first);
                }
            }
        }
        let dfa = &self.prefixes.dfa;
        let cache = self.cache.as_mut().expect("cache is present until drop");
        while self.cand < limit {
            if let Some(w) = word_from.filter(|&w| self.cand >= w) {
                self.early_from = Some(self.early_from.map_or(w, |e| e.min(w)));
                self.cand = n;
                self.state = None;
                return;
            }
            if n - self.cand > self.prefixes.max_len {
                self.cand = n - self.prefixes.max_len;
                self.state = None;
                continue;
            }
            let mut sid = match self.state {
                Some(s) => s,
                None => {
                    let look_behind = self.cand.checked_sub(1).map(|i| bytes[i]);
                    let cfg = start::Config::new()
                        .anchored(Anchored::Yes)
                        .look_behind(look_behind);
                    match dfa.start_state(cache, &cfg) {
                        Ok(s) => s,
                        // The automaton gave up: assume a match may start here.
                        Err(_) => return,
                    }
                }
            };
            let from = if self.state.is_some() {
                self.fed
            } else {
                self.cand
            };
            let mut dead = sid.is_dead();
            let mut i = from;
            while i < n && !dead {
                // Invisible characters are searched around (see `decode`), so they
                // must not end a candidate here either.
                let skip = decode::invisible_len(bytes, i);
                if skip > 0 {
                    i += skip;
                    continue;
                }
                sid = match dfa.next_state(cache, sid, bytes[i]) {
                    Ok(s) => s,
                    Err(_) => return,
                };
                dead = sid.is_dead();
                i += 1;
            }
            if dead {
                self.cand += 1;
                self.state = None;
            } else {
                self.state = Some(sid);
                self.fed = n;
                return;
            }
        }
    }

    /// Releases the settled text before `cand`, keeping a little as context.
    fn release(&mut self, out: &mut String) {
        if self.cand <= self.released {
            return;
        }
        let mut fast_cut = self.cand;
        while !self.buf.is_char_boundary(fast_cut) {
            fast_cut -= 1;
        }
        let findings = if self.nothing_to_find(fast_cut) {
            Vec::new()
        } else {
            self.find_pending()
        };
        let mut cut = self.cand;
        if let Some(f) = findings.iter().find(|f| f.start < cut && f.end > cut) {
            cut = f.start;
        }
        while !self.buf.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut <= self.released {
            return;
        }
        self.write(&findings, cut, out);
        // Released text stays as context for as far back as any match can reach:
        // a match crossing the cut (its secret or only its surrounding context)
        // starts at most the longest match length before it, and the search must
        // see it to choose between overlapping candidates as a whole-text search
        // does. Less context once let a secret through (fuzzing found it).
        // Dropped in bulk, once twice that much has accumulated.
        let reach = self.prefixes.max_len;
        if cut < 2 * reach.max(64) {
            return;
        }
        let mut keep_from = cut - reach;
        while !self.buf.is_char_boundary(keep_from) {
            keep_from += 1;
        }
        self.buf.drain(..keep_from);
        self.released -= keep_from;
        self.cand -= keep_from;
        self.fed = self.fed.saturating_sub(keep_from);
        self.scanned -= keep_from;
        self.early_from = self.early_from.map(|e| e.saturating_sub(keep_from));
        self.keywords
            .retain(|&(_, end, reach)| end.saturating_add(reach) > keep_from);
        // Occurrences now partly or wholly before the buffer are pinned to its
        // start: that only widens where they count, so the check stays safe.
        for k in &mut self.keywords {
            k.0 = k.0.saturating_sub(keep_from);
            k.1 = k.1.saturating_sub(keep_from);
        }
    }

    /// Findings in the text not yet released. In prompt mode, a secret that begins
    /// in a tail released early is kept too, cut to start at `released` (any
    /// other match across `released` lost to an overlapping one when its text
    /// was released, and stays dropped, as in the default mode).
    fn find_pending(&self) -> Vec<Finding> {
        let hay = self.buf.as_bytes();
        match self.early_from {
            Some(early) if self.words_early => {
                self.detector.find_straddling(hay, self.released, early)
            }
            _ => self.detector.find_with(hay, self.released, false),
        }
    }

    /// Writes `buf[released..upto]` redacted to `out` and marks it released.
    fn write(&mut self, findings: &[Finding], upto: usize, out: &mut String) {
        let end = self
            .detector
            .write_redacted(&self.buf, self.released, upto, findings, out);
        self.hits
            .extend(findings.iter().filter(|f| f.start < upto).map(|f| f.rule));
        self.released = end;
        self.cand = self.cand.max(end);
        if self.fed < self.cand {
            self.state = None;
        }
    }
}

impl Drop for StreamRedactor<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.cache.take() {
            self.prefixes.return_cache(c);
        }
    }
}
