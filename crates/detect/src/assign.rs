//! Judging `name = value` candidates: does the name say "secret", and is the value
//! a literal secret rather than a variable, call, template, path or placeholder?
//!
//! The regex of an assignment rule only finds the shape — a name holding a secret
//! word, a separator, a value — in any of the syntaxes real repositories use
//! (code, `.env`, YAML, JSON, TOML, INI, `.properties`, XML, command lines). This
//! module decides, from the whole name (extended to its identifier boundaries), the
//! separator, the quoting and the rest of the line, whether it is a finding and how
//! sure that is. Every step looks at a bounded neighbourhood of the match.

use crate::lexicon::{Lexicon, Marks};
use crate::rule::Confidence;
use crate::validate::shannon_entropy;
use std::sync::LazyLock;

/// What kind of secret a name announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyClass {
    /// password, passwd, pwd, pass, passphrase: values may be human-made.
    Password,
    /// secret, token, api key, private key, credential, salt, nonce: values must
    /// look machine-made.
    Secret,
}

impl KeyClass {
    /// Whether a value of `len` bytes can be a secret of this class: passwords
    /// of 4 to 128 bytes, machine-made secrets of 8 to 512.
    fn length_fits(self, len: usize) -> bool {
        match self {
            KeyClass::Password => (4..=128).contains(&len),
            KeyClass::Secret => (8..=512).contains(&len),
        }
    }
}

/// The parts of an assignment candidate, as byte spans of the haystack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    /// The name as the regex matched it (the judge extends it to the identifier).
    pub name: (usize, usize),
    /// The separator (`=`, `:`, `:=`, `=>`, `,`, blanks, or `>` for XML elements).
    pub sep: (usize, usize),
    /// The opening quote of the value, if any.
    pub quote: Option<u8>,
    /// Where the value starts (the pattern matches its first byte; the judge
    /// measures the rest).
    pub value: (usize, usize),
}

/// The outcome for an accepted candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Judgement {
    pub confidence: Confidence,
    pub reason: &'static str,
    /// The value's span.
    pub value: (usize, usize),
}

/// Longest identifier considered on either side of the match.
const MAX_NAME: usize = 80;

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// An identifier split into lower-case words (see [`words`]): the lowered bytes
/// and each word's span, held inline (no allocation) for names of up to 64 bytes
/// and 12 words. Names are split at every keyword hit, so this is on the hot path
/// of text dense with keywords.
pub(crate) struct Words {
    lower: smallvec::SmallVec<[u8; 64]>,
    /// `(start, end)` in `lower`: four-byte offsets keep the struct small to move.
    spans: smallvec::SmallVec<[(u32, u32); 12]>,
}

impl Words {
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Word `i`, lower-case ASCII letters and digits (panics past [`Words::len`]).
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        let (s, e) = self.spans[i];
        &self.lower[s as usize..e as usize]
    }

    /// The words in order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// Splits an identifier into lower-case words at `_ - . :`, at lower→upper case
/// changes, and before the last capital of a run of capitals followed by a lower
/// case letter (`APIKey` → `api`, `key`). Digits stay with the word before them.
#[cfg(test)]
pub(crate) fn words(name: &[u8]) -> Words {
    Words::of(name, |w| Words {
        lower: w.lower.clone(),
        spans: w.spans.clone(),
    })
}

impl Words {
    /// Calls `f` with `name` split into words (see [`words`]). The words live
    /// in the caller's frame: returning them would copy their inline buffers
    /// (about 200 bytes) on every keyword hit.
    #[inline]
    pub(crate) fn of<R>(name: &[u8], f: impl FnOnce(&Words) -> R) -> R {
        let mut w = Words {
            lower: smallvec::SmallVec::new(),
            spans: smallvec::SmallVec::new(),
        };
        w.split(name);
        f(&w)
    }

    fn split(&mut self, name: &[u8]) {
        let w = self;
        let mut start = 0;
        for (i, &b) in name.iter().enumerate() {
            if !b.is_ascii_alphanumeric() {
                if w.lower.len() > start {
                    w.spans.push((start as u32, w.lower.len() as u32));
                    start = w.lower.len();
                }
                continue;
            }
            if b.is_ascii_uppercase() && w.lower.len() > start {
                let prev = name[i - 1];
                let next_lower = name.get(i + 1).is_some_and(u8::is_ascii_lowercase);
                if prev.is_ascii_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_ascii_uppercase() && next_lower)
                {
                    w.spans.push((start as u32, w.lower.len() as u32));
                    start = w.lower.len();
                }
            }
            w.lower.push(b.to_ascii_lowercase());
        }
        if w.lower.len() > start {
            w.spans.push((start as u32, w.lower.len() as u32));
        }
    }
}

/// Words that, after a digit suffix is removed, announce a password.
fn is_password_word(w: &[u8]) -> bool {
    let w = without_digit_suffix(w);
    matches!(w, b"pass" | b"pw" | b"passw" | b"passphrase" | b"passcode")
        || w.ends_with(b"password")
        || w.ends_with(b"passwd")
        || w.ends_with(b"pwd")
        || w.ends_with(b"passwort")
        || w.ends_with(b"passphrase")
        || w.ends_with(b"pass") && PASS_COMPOUND_SET.contains(w)
}

/// `w` without the digits it ends with.
fn without_digit_suffix(w: &[u8]) -> &[u8] {
    let keep = w.len() - w.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    &w[..keep]
}

static PASS_COMPOUND_SET: LazyLock<Lexicon> = LazyLock::new(|| Lexicon::of(&[PASS_COMPOUNDS]));
static KEY_QUALIFIER_SET: LazyLock<Lexicon> = LazyLock::new(|| Lexicon::of(&[KEY_QUALIFIERS]));
static TRAILING_OK_SET: LazyLock<Lexicon> = LazyLock::new(|| Lexicon::of(&[TRAILING_OK]));
static LEADING_BAD_SET: LazyLock<Lexicon> = LazyLock::new(|| Lexicon::of(&[LEADING_BAD]));

/// Single words ending in `pass` that mean a password (most words ending in `pass`
/// do not: bypass, compass, surpass). Only words ending in `pass` are looked up.
const PASS_COMPOUNDS: &[&str] = &[
    "dbpass",
    "rootpass",
    "adminpass",
    "userpass",
    "mypass",
    "sqlpass",
    "ftppass",
    "smtppass",
    "mailpass",
    "ldappass",
    "proxypass",
    "keypass",
    "storepass",
    "sshpass",
    "authpass",
];

/// Single words that announce a machine-made secret by themselves.
fn is_secret_word(w: &[u8]) -> bool {
    let w = without_digit_suffix(w);
    matches!(
        w,
        b"secret"
            | b"secrets"
            | b"token"
            | b"credential"
            | b"credentials"
            | b"creds"
            | b"salt"
            | b"nonce"
            | b"apikey"
            | b"privatekey"
            | b"secretkey"
            | b"accesskey"
            | b"appkey"
            | b"appsecret"
            | b"authkey"
            | b"authtoken"
            | b"accesstoken"
            | b"refreshtoken"
            | b"apitoken"
            | b"apisecret"
            | b"clientsecret"
            | b"consumersecret"
            | b"masterkey"
            | b"signingkey"
            | b"encryptionkey"
            | b"licensekey"
            | b"sessionkey"
            | b"hmackey"
            | b"subscriptionkey"
            | b"webhooksecret"
            | b"auth"
    ) || (w.len() > 6 && (w.ends_with(b"secret") || w.ends_with(b"token")))
}

/// Words before `key` that make it a secret key.
const KEY_QUALIFIERS: &[&str] = &[
    "api",
    "secret",
    "private",
    "access",
    "auth",
    "client",
    "app",
    "application",
    "master",
    "signing",
    "sign",
    "signature",
    "encryption",
    "encrypt",
    "enc",
    "session",
    "consumer",
    "license",
    "licence",
    "account",
    "service",
    "shared",
    "hmac",
    "jwt",
    "crypto",
    "cipher",
    "aes",
    "secure",
    "security",
    "admin",
    "subscription",
    "storage",
    "webhook",
    "server",
    "mac",
    "developer",
    "dev",
    "rest",
    "bot",
    "integration",
    "partner",
    "merchant",
    "push",
    "sdk",
    "cookie",
    "csrf",
    "xsrf",
    "otp",
    "totp",
    "recaptcha",
    "captcha",
    "maps",
    "google",
    "stripe",
    "mailgun",
    "sendgrid",
    "twilio",
    "slack",
    "aws",
    "azure",
    "gcp",
    "wechat",
    "weixin",
    "appid",
    "pay",
    "payment",
    "decryption",
    "symmetric",
    "root",
    "write",
    "read",
    "ingest",
    "project",
    "personal",
    "user",
    "deploy",
    "bearer",
    "oauth",
    "rsa",
    "ssh",
    "pgp",
    "gpg",
    "tls",
    "ssl",
];

/// Words that may follow the secret word without changing what the name holds.
const TRAILING_OK: &[&str] = &[
    "value",
    "val",
    "str",
    "string",
    "plain",
    "plaintext",
    "confirmation",
    "confirm",
    "b64",
    "base64",
    "hex",
    "raw",
    "bytes",
    "data",
    "new",
    "old",
    "override",
    "secret",
    "key",
    "token",
    "encoded",
    "base",
    "text",
    "clear",
    "cleartext",
    "literal",
    "default",
    "prod",
    "dev",
    "test",
    "local",
    "staging",
    "again",
    "repeat",
    "verify",
    "2",
    "1",
];

/// Words that, anywhere before the secret word, mean the name is about a secret
/// rather than holding one (`public_key`, `min_password_length`, `is_token`).
const LEADING_BAD: &[&str] = &[
    "public",
    "pub",
    "is",
    "has",
    "use",
    "uses",
    "enable",
    "enabled",
    "show",
    "hide",
    "forgot",
    "reset",
    "min",
    "max",
    "validate",
    "validates",
    "last",
    "num",
    "count",
    "field",
    "input",
    "label",
    "placeholder",
    "no",
    "require",
    "requires",
    "required",
    "should",
    "can",
    "allow",
    "default",
    "check",
    "get",
    "fetch",
    "load",
    "read",
    "generate",
    "gen",
    "create",
    "parse",
    "hash",
    "hashed",
    "encode",
    "decode",
    "verify",
    "match",
    "invalid",
    "wrong",
    "bad",
    "empty",
    "missing",
    "expected",
    "prompt",
    "ask",
    "need",
    "needs",
    "send",
    "save",
    "store",
    "update",
    "change",
    "rotate",
    "mask",
    "masked",
    "redact",
    "hidden",
    "display",
    "print",
    "log",
    "set",
    "mock",
    "fake",
    "random",
    "encrypted",
    "old",
];

/// What a name announces, or `None` when it announces no secret.
pub(crate) fn classify_name(name: &[u8]) -> Option<KeyClass> {
    Words::of(name, classify_words)
}

/// [`classify_name`] for a name already split.
fn classify_words(ws: &Words) -> Option<KeyClass> {
    // The last secret word decides; every word after it must be harmless.
    let (pos, class) = (0..ws.len()).rev().find_map(|i| {
        let w = ws.get(i);
        if is_password_word(w) {
            Some((i, KeyClass::Password))
        } else if is_secret_word(w)
            || (matches!(w, b"key" | b"keys") && i > 0 && KEY_QUALIFIER_SET.contains(ws.get(i - 1)))
        {
            Some((i, KeyClass::Secret))
        } else {
            None
        }
    })?;
    if ws
        .iter()
        .skip(pos + 1)
        .any(|w| !TRAILING_OK_SET.contains(w))
    {
        return None;
    }
    if ws.iter().take(pos).any(|w| LEADING_BAD_SET.contains(w)) {
        return None;
    }
    Some(class)
}

/// Values that are language words, types or stand-ins, not secrets (lower case).
const NON_VALUES: &[&str] = &[
    "true",
    "false",
    "null",
    "nil",
    "none",
    "undefined",
    "yes",
    "no",
    "on",
    "off",
    "required",
    "optional",
    "string",
    "str",
    "int",
    "integer",
    "bool",
    "boolean",
    "number",
    "object",
    "any",
    "char",
    "byte",
    "bytes",
    "text",
    "secret",
    "secrets",
    "password",
    "passwd",
    "pwd",
    "pass",
    "token",
    "key",
    "apikey",
    "api_key",
    "empty",
    "blank",
    "default",
    "env",
    "value",
    "varchar",
    "secretstr",
    "secretstring",
    "securestring",
    "optional[str]",
    "hidden",
    "masked",
    "redacted",
    "unknown",
    "test",
    "example",
    "sample",
    "dummy",
    "placeholder",
    "changeme",
    "change_me",
    "your_password",
    "yourpassword",
    "your-password",
    "mypassword",
    "my_password",
    "your_token",
    "your_secret",
    "xxx",
    "todo",
    "tbd",
    "n/a",
    "na",
    "self",
    "this",
    "params",
    "function",
    "lambda",
    "new",
    "return",
    "await",
    "async",
];

/// Default and throw-away passwords that test fixtures and tutorials use: not worth
/// a finding on their own (lower case).
const WEAK_DEFAULTS: &[&str] = &[
    "123", "1234", "12345", "123456", "1234567", "12345678", "root", "admin", "test", "test123",
    "testtest", "passw", "pass", "foo", "bar", "foobar", "qwerty", "abc123", "my_pass", "mypass",
    "wrong", "user", "username", "demo", "toor",
];

/// No entry of [`WEAK_DEFAULTS`] is longer (a test holds it to that).
const LONGEST_WEAK_DEFAULT: usize = 16;

static WEAK_DEFAULT_SET: LazyLock<Lexicon> = LazyLock::new(|| Lexicon::of(&[WEAK_DEFAULTS]));
static NON_VALUE_SET: LazyLock<Lexicon> = LazyLock::new(|| Lexicon::of(&[NON_VALUES]));
/// [`NON_VALUES`] and [`WEAK_DEFAULTS`]: what a value may not be, whatever the name.
static NOT_SECRET_SET: LazyLock<Lexicon> =
    LazyLock::new(|| Lexicon::of(&[NON_VALUES, WEAK_DEFAULTS]));
static TEMPLATE_MARK_SET: LazyLock<Marks> = LazyLock::new(|| Marks::of(TEMPLATE_MARKS));
static FILE_EXTENSION_SET: LazyLock<Lexicon> = LazyLock::new(|| Lexicon::of(&[FILE_EXTENSIONS]));

/// True for values that stand for a credential rather than being one: a default
/// or throw-away password (`admin`, `123456`) or a name made of several words one
/// of which says secret (`db_password`, `MY_GITHUB_TOKEN`, `x-oauth-token`).
pub(crate) fn is_stand_in(v: &[u8]) -> bool {
    if v.len() <= LONGEST_WEAK_DEFAULT && {
        let lower: smallvec::SmallVec<[u8; LONGEST_WEAK_DEFAULT]> =
            v.iter().map(u8::to_ascii_lowercase).collect();
        WEAK_DEFAULT_SET.contains(&lower)
    } {
        return true;
    }
    is_secret_compound(v)
}

/// True for an identifier of several words one of which says secret
/// (`db_password`, `refresh_token`, `gitLabDevClientSecret`): a name, not a value.
fn is_secret_compound(v: &[u8]) -> bool {
    // The byte test first: it is cheaper than splitting into words.
    v.iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && Words::of(v, |ws| {
            ws.len() >= 2
                && ws
                    .iter()
                    .any(|w| is_password_word(w) || is_secret_word(w) || w == b"key")
        })
}

/// Substrings that mark a template, format string, placeholder or masked value,
/// in lower case (they are looked for in the lowered value).
const TEMPLATE_MARKS: &[&str] = &[
    "${",
    "{{",
    "}}",
    "#{",
    "%(",
    "%s",
    "%d",
    "<%",
    "%>",
    "{0}",
    "{1}",
    "$(",
    "***",
    "xxxx",
    "...",
    "<your",
    "your_",
    "your-",
    "here>",
    "_here",
    "-here",
    "placeholder",
    "<hidden>",
    "[redacted",
    "[filtered",
    "redacted]",
    "changethis",
    "change_this",
    "insert_",
    "replace_",
    "replaceme",
    "::",
    "->",
    "</",
    ".*",
    "{}",
    "?.",
    "abcdefgh",
    "0123456789a",
];

/// File extensions that mark a value as a file name, not a secret: a dot and
/// lower-case letters and digits (the value's last dot is where one starts).
const FILE_EXTENSIONS: &[&str] = &[
    ".pem",
    ".key",
    ".txt",
    ".json",
    ".yml",
    ".yaml",
    ".crt",
    ".cer",
    ".p12",
    ".pfx",
    ".jks",
    ".keystore",
    ".der",
    ".cfg",
    ".conf",
    ".properties",
    ".env",
    ".xml",
    ".ini",
    ".toml",
    ".pub",
    ".asc",
    ".gpg",
    ".enc",
    ".secret",
    ".token",
    ".py",
    ".js",
    ".ts",
    ".rb",
    ".go",
    ".java",
    ".php",
    ".sh",
    ".html",
    ".csv",
    ".log",
    ".db",
    ".sqlite",
    ".file",
    ".bin",
];

/// Character classes present in a value.
struct Classes {
    lower: bool,
    upper: bool,
    digit: bool,
    symbol: bool,
}

/// One pass over `v` (the judge asks for the classes of every value it reads).
fn classes(v: &[u8]) -> Classes {
    let mut c = Classes {
        lower: false,
        upper: false,
        digit: false,
        symbol: false,
    };
    for b in v {
        c.lower |= b.is_ascii_lowercase();
        c.upper |= b.is_ascii_uppercase();
        c.digit |= b.is_ascii_digit();
        c.symbol |= b.is_ascii_punctuation();
    }
    c
}

impl Classes {
    fn count(&self) -> usize {
        [self.lower, self.upper, self.digit, self.symbol]
            .iter()
            .filter(|&&c| c)
            .count()
    }
}

/// A code identifier or a member/index chain of them: `password`, `cfg.db.pass`,
/// `opts[:password]`, `$password`, `@password`.
fn is_code_reference(v: &[u8]) -> bool {
    let v = v
        .strip_prefix(b"$")
        .or_else(|| v.strip_prefix(b"@"))
        .unwrap_or(v);
    let Some(&first) = v.first() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'_')
        && v.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'.' | b'[' | b']' | b':' | b'$' | b'?' | b'!')
        })
}

/// True for a UUID in its usual `8-4-4-4-12` form.
fn is_uuid(v: &[u8]) -> bool {
    v.len() == 36
        && v.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// True when the value looks machine-made: long enough, several character classes
/// or hex/base64 alphabets with high entropy.
fn machine_made(v: &[u8]) -> bool {
    if is_uuid(v) {
        return true;
    }
    let c = classes(v);
    let all_hex = v.iter().all(u8::is_ascii_hexdigit);
    if all_hex {
        return v.len() >= 16 && c.digit && (c.lower || c.upper) && shannon_entropy(v) >= 3.0;
    }
    v.len() >= 12 && c.count() >= 2 && c.digit && shannon_entropy(v) >= 3.0
        || v.len() >= 20 && c.count() >= 2 && shannon_entropy(v) >= 3.5
}

/// True when a value cannot be a literal secret whatever the name says.
///
/// `name` is the name the value is assigned to: a value that repeats it is not a
/// secret either.
fn disqualified(v: &[u8], name: &[u8]) -> bool {
    // `value_end` measures at most `MAX_VALUE + 1` bytes: values are lowered in
    // a buffer on the stack, with no copy of it moved around (longer ones, which
    // only tests pass, on the heap).
    let mut buffer = [0u8; MAX_VALUE + 1];
    let mut heap = Vec::new();
    let lower = match buffer.get_mut(..v.len()) {
        Some(on_stack) => on_stack,
        None => {
            heap.resize(v.len(), 0);
            &mut heap[..]
        }
    };
    lower.copy_from_slice(v);
    lower.make_ascii_lowercase();
    let lower = &*lower;
    if NOT_SECRET_SET.contains(lower) || starts_with_ignore_case(lower, name) {
        return true;
    }
    let bare = lower
        .strip_suffix(b"!")
        .or_else(|| lower.strip_suffix(b"?"))
        .unwrap_or(lower);
    if NON_VALUE_SET.contains(bare) {
        return true;
    }
    // Prose and docstrings in other scripts: secrets are ASCII.
    if !v.is_ascii() {
        return true;
    }
    let first = v[0];
    if matches!(
        first,
        b'$' | b'%' | b'{' | b'<' | b'&' | b'[' | b'@' | b'#' | b'\\' | b'*'
    ) {
        return true;
    }
    // Braces and closing brackets belong to code (`Mock{}`, `None)`, `x[0]`).
    if v.iter()
        .any(|b| matches!(b, b'{' | b'}' | b')' | b']' | b'['))
    {
        return true;
    }
    // Decimal numbers and versions (`0.608`, `orgjson:0.11.2`).
    if is_number_or_version(v) {
        return true;
    }
    // A name made of several words one of which says secret is another name
    // (`refresh_token`, `GCM_TRACE_SECRETS`, `gitLabDevClientSecret`).
    if is_secret_compound(v) {
        return true;
    }
    // Dotted identifiers: `keyword.operator.binary`, `mysite.forms.SetPasswordForm`.
    if v.contains(&b'.')
        && v.split(|&b| b == b'.').all(|p| {
            !p.is_empty()
                && p.iter()
                    .all(|&b| b.is_ascii_alphabetic() || b == b'_' || b == b'-')
        })
    {
        return true;
    }
    if TEMPLATE_MARK_SET.any_in(lower) {
        return true;
    }
    // A call, a URL, a path.
    if v.contains(&b'(') || memchr::memmem::find(v, b"://").is_some() {
        return true;
    }
    if v.starts_with(b"/") || v.starts_with(b"./") || v.starts_with(b"~/") || v.starts_with(b"../")
    {
        return true;
    }
    if v.len() > 2 && v[1] == b':' && v[2] == b'\\' {
        return true;
    }
    if memchr::memrchr(b'.', lower)
        .is_some_and(|dot| dot > 0 && FILE_EXTENSION_SET.contains(&lower[dot..]))
    {
        return true;
    }
    if lower.starts_with(b"0x") || lower.starts_with(b"env:") || lower.starts_with(b"file:") {
        return true;
    }
    // The same character over and over: a mask or a filler.
    let distinct = {
        let mut seen = [false; 256];
        v.iter()
            .filter(|&&b| !std::mem::replace(&mut seen[b as usize], true))
            .count()
    };
    if v.len() >= 4 && distinct <= 2 {
        return true;
    }
    false
}

/// True when `v` starts with `prefix`, ASCII case ignored.
fn starts_with_ignore_case(v: &[u8], prefix: &[u8]) -> bool {
    v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// True when `v` ends with `suffix`, ASCII case ignored.
fn ends_with_ignore_case(v: &[u8], suffix: &[u8]) -> bool {
    v.len() >= suffix.len() && v[v.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// `1.5`, `0.608`, `v1.2.3`, `name:0.11.2`: numbers and version strings.
fn is_number_or_version(v: &[u8]) -> bool {
    let tail = match memchr::memrchr(b':', v) {
        Some(i) => &v[i + 1..],
        None => v,
    };
    let tail = tail.strip_prefix(b"v").unwrap_or(tail);
    tail.contains(&b'.')
        && tail.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        && tail.first().is_some_and(u8::is_ascii_digit)
}

/// Bytes from `at` to the end of the line (at most `limit`).
fn rest_of_line(hay: &[u8], at: usize, limit: usize) -> &[u8] {
    let end = (at + limit).min(hay.len());
    let tail = &hay[at.min(end)..end];
    match memchr::memchr2(b'\n', b'\r', tail) {
        Some(n) => &tail[..n],
        None => tail,
    }
}

/// Bytes from the start of the line to `at` (at most `limit`).
fn line_before(hay: &[u8], at: usize, limit: usize) -> &[u8] {
    let start = at.saturating_sub(limit);
    let head = &hay[start..at];
    match memchr::memrchr(b'\n', head) {
        Some(n) => &head[n + 1..],
        None => head,
    }
}

/// True when what follows an unquoted value ending at `at` ends the statement the
/// way config files do: blanks, then the end of the line (or of 160 bytes), a
/// comment, or a line continuation. Reads only as far as it must: values are
/// judged at every keyword occurrence.
fn ends_like_config(hay: &[u8], at: usize) -> bool {
    let end = (at + 160).min(hay.len());
    let mut i = at.min(end);
    while i < end && matches!(hay[i], b' ' | b'\t' | b'\x0c') {
        i += 1;
    }
    let rest = &hay[i..end];
    match rest.first() {
        None | Some(b'\n' | b'\r' | b'#' | b';') => true,
        Some(b'/') => rest.get(1) == Some(&b'/'),
        Some(b'\\') => matches!(rest.get(1), None | Some(b'\n' | b'\r')),
        Some(_) => false,
    }
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Reads the assignment shape of the `password-assignment` and `secret-assignment`
/// patterns at a keyword occurrence `hay[ks..ke]`, in code rather than with the
/// regex (the same language: name bytes after the keyword, up to two closing quotes
/// or brackets, then `= : := => ,` with up to four blanks either side and an
/// optional opening quote with a string prefix, or blanks and a single quote; then
/// a value byte). Far cheaper than running captures on every `key = …` in code.
pub(crate) fn parse_at(hay: &[u8], ks: usize, ke: usize) -> Option<Candidate> {
    let n = hay.len();
    let mut i = ke;
    while i < n && i - ke < 30 && is_name_byte(hay[i]) {
        i += 1;
    }
    let name = (ks, i);
    let mut closes = 0;
    while i < n && closes < 2 && matches!(hay[i], b'"' | b'\'' | b'`' | b']') {
        i += 1;
        closes += 1;
    }
    let blanks = |from: usize, max: usize| {
        hay[from..]
            .iter()
            .take(max)
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count()
    };
    let sep_start = i;
    let lead = blanks(i, 4);
    let op = &hay[i + lead..];
    let op_len = if op.starts_with(b":=") || op.starts_with(b"=>") {
        2
    } else if matches!(op.first(), Some(b'=' | b':' | b',')) {
        1
    } else {
        0
    };
    let (sep, quote_span) = if op_len > 0 {
        let after_op = i + lead + op_len;
        let end = after_op + blanks(after_op, 4);
        // An optional string prefix, then an optional quote.
        let prefix = hay[end..]
            .iter()
            .take(2)
            .take_while(|b| {
                matches!(
                    b,
                    b'@' | b'r' | b'R' | b'b' | b'B' | b'u' | b'U' | b'f' | b'F'
                )
            })
            .count();
        let q = if matches!(hay.get(end + prefix), Some(b'"' | b'\'' | b'`')) {
            Some((end, end + prefix + 1))
        } else {
            None
        };
        ((sep_start, end), q)
    } else if lead > 0 && hay.get(i + lead) == Some(&b'\'') {
        ((sep_start, i + lead), Some((i + lead, i + lead + 1)))
    } else {
        return None;
    };
    let value_start = quote_span.map_or(sep.1, |q| q.1);
    let first = *hay.get(value_start)?;
    if first.is_ascii_whitespace() || matches!(first, b'"' | b'\'' | b'`' | b'&' | b',' | b';') {
        return None;
    }
    Some(Candidate {
        name,
        sep,
        quote: quote_span.map(|q| hay[q.1 - 1]),
        value: (value_start, value_start + 1),
    })
}

/// True for what the patterns' `\s` matches (ASCII: vertical tab included).
fn is_regex_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// How many bytes after `from` (at most `max + 1`) satisfy `f`.
fn run_len(hay: &[u8], from: usize, max: usize, f: impl Fn(u8) -> bool) -> usize {
    hay[from.min(hay.len())..]
        .iter()
        .take(max + 1)
        .take_while(|&&b| f(b))
        .count()
}

/// Reads the shape of the `password-flag` and `secret-flag` patterns with the
/// name starting at the keyword occurrence `hay[ks..ke]`: before it `-` or `--`
/// at the start of the text or after a blank, quote or `(`, or `ENV`/`ARG`, one
/// to four blanks and up to 40 identifier bytes; after it up to 30 name bytes,
/// one to four blanks, an optional quote and a value byte.
pub(crate) fn flag_at(hay: &[u8], ks: usize, ke: usize) -> Option<Candidate> {
    let opens_flag = |at: usize| {
        at == 0 || matches!(hay[at - 1], b'\'' | b'"' | b'(') || is_regex_space(hay[at - 1])
    };
    let dashed = ks >= 1
        && hay[ks - 1] == b'-'
        && (opens_flag(ks - 1) || ks >= 2 && hay[ks - 2] == b'-' && opens_flag(ks - 2));
    let docker = || {
        let ident = hay[..ks]
            .iter()
            .rev()
            .take(41)
            .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_')
            .count();
        let run = ks - ident;
        let blanks = hay[..run]
            .iter()
            .rev()
            .take(5)
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        ident <= 40 && (1..=4).contains(&blanks) && run - blanks >= 3 && {
            let word = &hay[run - blanks - 3..run - blanks];
            word.eq_ignore_ascii_case(b"ENV") || word.eq_ignore_ascii_case(b"ARG")
        }
    };
    if !dashed && !docker() {
        return None;
    }
    let tail = run_len(hay, ke, 30, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
    });
    if tail > 30 {
        return None;
    }
    let name_end = ke + tail;
    let blanks = run_len(hay, name_end, 4, |b| b == b' ' || b == b'\t');
    if !(1..=4).contains(&blanks) {
        return None;
    }
    let sep = (name_end, name_end + blanks);
    let quote = hay.get(sep.1).copied().filter(|&b| b == b'"' || b == b'\'');
    let value_start = sep.1 + usize::from(quote.is_some());
    let first = *hay.get(value_start)?;
    if is_regex_space(first) || matches!(first, b'"' | b'\'' | b'`' | b'&' | b',' | b';') {
        return None;
    }
    Some(Candidate {
        name: (ks, name_end),
        sep,
        quote,
        value: (value_start, value_start + 1),
    })
}

/// Reads the shape of the `password-xml-element` and `secret-xml-element`
/// patterns with the element name starting at the keyword occurrence
/// `hay[ks..ke]`: up to 30 more name bytes (`:` included), `>`, and a value byte
/// that is neither `<` nor blank.
pub(crate) fn xml_element_at(hay: &[u8], ks: usize, ke: usize) -> Option<Candidate> {
    let tail = run_len(hay, ke, 30, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
    });
    if tail > 30 {
        return None;
    }
    let name_end = ke + tail;
    if hay.get(name_end) != Some(&b'>') {
        return None;
    }
    let first = *hay.get(name_end + 1)?;
    if first == b'<' || is_regex_space(first) {
        return None;
    }
    Some(Candidate {
        name: (ks, name_end),
        sep: (name_end, name_end + 1),
        quote: None,
        value: (name_end + 1, name_end + 2),
    })
}

/// Longest value considered.
const MAX_VALUE: usize = 256;

/// Bytes past the first byte of a value that a judgement may read: the value, its
/// closing quote and the rest of its line (at most 160 bytes of it).
pub(crate) const MAX_READ_PAST: usize = MAX_VALUE + 2 + 160;

/// What earlier unquoted values of one search learned about the text: no stop byte
/// (blank, quote, `&`; for XML `<` and blanks) lies in `hay[from..upto]`, and
/// `stop` says whether `hay[upto]` is one. Keywords repeated inside one long run
/// of value bytes would otherwise each rescan it: with this, a search reads each
/// byte of such a run once, however many candidates start in it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ValueRuns {
    known: Option<Run>,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    from: usize,
    upto: usize,
    stop: bool,
    xml: bool,
}

impl ValueRuns {
    /// The first stop byte at or after `start`, looking no further than `limit`
    /// (exclusive): its position, or `limit` when there is none before it.
    fn stop_from(&mut self, hay: &[u8], start: usize, limit: usize, xml: bool) -> usize {
        let is_stop = |b: u8| {
            if xml {
                b == b'<' || b.is_ascii_whitespace()
            } else {
                b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'`' | b'&')
            }
        };
        let (from, mut i) = match self.known {
            Some(run) if run.xml == xml && run.from <= start && start <= run.upto => {
                if run.stop || run.upto >= limit {
                    return run.upto.min(limit);
                }
                (run.from, run.upto)
            }
            _ => (start, start),
        };
        while i < limit && !is_stop(hay[i]) {
            i += 1;
        }
        self.known = Some(Run {
            from,
            upto: i,
            stop: i < limit,
            xml,
        });
        i
    }
}

/// The end of the value starting at `start`: up to the closing `quote`, the `<` of
/// an XML end tag, or, unquoted, the first blank, quote or `&` (trailing `,` and `;`
/// left out). `None` when a quoted value does not close on its line within
/// [`MAX_VALUE`] bytes.
fn value_end(
    hay: &[u8],
    start: usize,
    quote: Option<u8>,
    xml: bool,
    runs: &mut ValueRuns,
) -> Option<usize> {
    let limit = (start + MAX_VALUE + 1).min(hay.len());
    let mut i = start;
    match quote {
        Some(q) => {
            while i < limit {
                match hay[i] {
                    b'\\' => i += 2,
                    // Prose, not a secret: values with blanks are left out.
                    b'\n' | b'\r' | b' ' | b'\t' => return None,
                    b if b == q => return Some(i),
                    _ => i += 1,
                }
            }
            None
        }
        None => {
            i = runs.stop_from(hay, start, limit, xml);
            if i == limit && i < hay.len() {
                return None; // longer than any value we judge
            }
            if !xml {
                while i > start && matches!(hay[i - 1], b',' | b';') {
                    i -= 1;
                }
            }
            Some(i)
        }
    }
}

/// Judges a candidate of a rule whose name must say `class`.
///
/// `runs` carries what earlier judgements of the same search read (see
/// [`ValueRuns`]); a fresh one is always correct, only slower.
pub(crate) fn judge(
    hay: &[u8],
    c: &Candidate,
    class: KeyClass,
    runs: &mut ValueRuns,
) -> Option<Judgement> {
    // The whole name: extend the matched name over identifier bytes to the left.
    let mut ns = c.name.0;
    while ns > 0 && c.name.0 - ns < MAX_NAME && is_name_byte(hay[ns - 1]) {
        ns -= 1;
    }
    if ns > 0 && is_name_byte(hay[ns - 1]) {
        return None; // an identifier too long to be a name
    }
    let name = &hay[ns..c.name.1];
    let sep_bytes = &hay[c.sep.0..c.sep.1];
    let xml = sep_bytes == b">";
    if xml {
        // Element names may carry a namespace prefix (`<db:adminPassword>`).
        while ns > 0
            && c.name.0 - ns < MAX_NAME
            && (is_name_byte(hay[ns - 1]) || hay[ns - 1] == b':')
        {
            ns -= 1;
        }
        if ns == 0 || hay[ns - 1] != b'<' {
            return None;
        }
    }
    let value_span = (c.value.0, value_end(hay, c.value.0, c.quote, xml, runs)?);
    let value = &hay[value_span.0..value_span.1];
    // The class's length bounds before the name's words: text dense with
    // keywords is mostly names without a value that could be a secret.
    if !class.length_fits(value.len()) || classify_name(name) != Some(class) {
        return None;
    }
    // The line before the name: read only on the paths that need it.
    let before_trim = || trim_start(line_before(hay, ns, 160));
    let sep = &hay[c.sep.0..c.sep.1];
    // The operator: blanks are only on either side of it.
    let sep_trim = sep.trim_ascii();

    // The separator, as the syntax around it allows.
    let name_quoted = c.name.1 < hay.len() && matches!(hay[c.name.1], b'"' | b'\'' | b'`');
    match sep_trim {
        b"=" => {
            let prev = hay[c.sep.0.saturating_sub(1)];
            let next = hay.get(c.sep.1).copied().unwrap_or(b' ');
            if matches!(prev, b'!' | b'<' | b'>' | b'=') || matches!(next, b'=' | b'~') {
                return None;
            }
        }
        b":" | b":=" | b"=>" | b">" => {}
        b"," => {
            // `("password", "value")`, `define('DB_PASSWORD', 'value')`: only between
            // two string literals.
            let opened = line_before(hay, ns, 160)
                .iter()
                .rev()
                .find(|b| !b.is_ascii_whitespace())
                .copied();
            if !name_quoted || c.quote.is_none() || !matches!(opened, Some(b'"' | b'\'')) {
                return None;
            }
            let before_quote = &line_before(hay, ns, 160);
            let before_quote = &before_quote[..before_quote.len().saturating_sub(1)];
            if before_quote.iter().rev().find(|b| !b.is_ascii_whitespace()) != Some(&b'(') {
                return None;
            }
        }
        b"" => {
            // Blanks only: a command-line flag (`--password value`), a Dockerfile
            // `ENV NAME value`, or SQL (`PASSWORD 'value'`).
            let flag = hay[ns] == b'-';
            let docker = before_trim().starts_with(b"ENV ") || before_trim().starts_with(b"ARG ");
            let sql = class == KeyClass::Password && c.quote == Some(b'\'');
            if !(flag || docker || sql) {
                return None;
            }
        }
        _ => return None,
    }
    if xml {
        // `<password>value</password>`: the element must close right after.
        if !hay[value_span.1..].starts_with(b"</") {
            return None;
        }
    }

    // The value: a complete literal.
    match c.quote {
        Some(q) => {
            if hay.get(value_span.1) != Some(&q) {
                return None;
            }
            // Part of an expression: `"sk-" + random()`, `'pre' . $x`, `"%s" % v`.
            let after_quote = trim_start(rest_of_line(hay, value_span.1 + 1, 16));
            if matches!(after_quote.first(), Some(b'+' | b'.' | b'%' | b'|')) {
                return None;
            }
            // A Python f-string or a JS template literal with substitutions.
            if c.value.0 >= 2
                && matches!(hay[c.value.0 - 2], b'f' | b'F')
                && q != b'`'
                && value.contains(&b'{')
            {
                return None;
            }
        }
        None => {
            // `secret:openai-prod:wk3`, `token:v1:abc`: a colon path (a cache key, a
            // URN), not `name: value`.
            if sep_trim == b":" && sep.len() == 1 && value.contains(&b':') {
                return None;
            }
            let flag = hay[ns] == b'-';
            if !xml && !flag && !ends_like_config(hay, value_span.1) {
                // In code an unquoted value followed by more code is an expression,
                // unless it could only be a literal secret.
                if is_code_reference(value) || !machine_made(value) {
                    return None;
                }
            }
        }
    }
    // `$name` expands in unquoted and double-quoted shell, PHP and Perl strings.
    if c.quote != Some(b'\'')
        && value.windows(2).any(|w| {
            w[0] == b'$' && (w[1].is_ascii_alphabetic() || matches!(w[1], b'_' | b'{' | b'('))
        })
    {
        return None;
    }
    if disqualified(value, name) {
        return None;
    }
    // A name used as a lookup key in code: `params["password"]`, `form.get("token")`
    // has no literal after it; `"password": password` has a reference.
    let unquoted_ref = c.quote.is_none() && !xml && hay[ns] != b'-' && is_code_reference(value);
    if unquoted_ref {
        // In config files (`password: hunter2`, `DB_PASSWORD=hunter2`) a bare word
        // is the value itself; in code it is a variable. Config lines start with the
        // name (after indentation, `- `, `export `, `set `, a comment marker).
        let before_trim = before_trim();
        let config_line = before_trim.is_empty()
            || before_trim == b"-"
            || before_trim == b"- "
            || [
                &b"export "[..],
                b"set ",
                b"ENV ",
                b"ARG ",
                b"# ",
                b"#",
                b"-- ",
                b"; ",
            ]
            .contains(&before_trim);
        if !config_line
            || value.contains(&b'.') && !classes(value).digit
            || classify_name(value).is_some()
            || ends_with_ignore_case(value, b"password")
                && (value.contains(&b'_') || {
                    let c = classes(value);
                    c.upper && c.lower
                })
        {
            return None;
        }
        // Typed declarations: `password: String`.
        if matches!(
            value,
            b"String" | b"Secret" | b"Option" | b"Optional" | b"Text" | b"Password" | b"Token"
        ) {
            return None;
        }
    }

    let mm = machine_made(value);
    let c_ = classes(value);
    match class {
        KeyClass::Password => {
            if value.iter().all(u8::is_ascii_digit) && value.len() < 6 {
                return None;
            }
            let (confidence, reason) = if mm {
                (
                    Confidence::High,
                    "password-like name assigned a machine-made literal",
                )
            } else if c_.count() >= 2 && value.len() >= 6 {
                (Confidence::Medium, "password-like name assigned a literal")
            } else {
                (
                    Confidence::Low,
                    "password-like name assigned a short or dictionary-like literal",
                )
            };
            Some(Judgement {
                confidence,
                reason,
                value: value_span,
            })
        }
        KeyClass::Secret => {
            if !mm {
                return None;
            }
            let confidence = if value.len() >= 16 && shannon_entropy(value) >= 3.5 || is_uuid(value)
            {
                Confidence::High
            } else {
                Confidence::Medium
            };
            Some(Judgement {
                confidence,
                reason: "secret-like name assigned a machine-made literal",
                value: value_span,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Value ends found with what earlier values of the same search learned
        /// equal those found from scratch, whatever order the starts come in.
        #[test]
        fn remembered_runs_do_not_change_value_ends(
            text in "[a-z=&<' \n]{0,600}",
            starts in proptest::collection::vec(0usize..600, 1..40),
            xml in any::<bool>(),
        ) {
            let hay = text.as_bytes();
            let mut runs = ValueRuns::default();
            for start in starts.into_iter().filter(|&s| s < hay.len()) {
                let fresh = value_end(hay, start, None, xml, &mut ValueRuns::default());
                prop_assert_eq!(value_end(hay, start, None, xml, &mut runs), fresh);
            }
        }
    }

    #[test]
    fn word_lists_are_lower_case() {
        for m in TEMPLATE_MARKS.iter().chain(NON_VALUES).chain(WEAK_DEFAULTS) {
            assert_eq!(*m, m.to_ascii_lowercase(), "{m:?} must be lower case");
        }
        for w in WEAK_DEFAULTS {
            assert!(
                w.len() <= LONGEST_WEAK_DEFAULT,
                "{w:?} is longer than LONGEST_WEAK_DEFAULT"
            );
        }
    }

    #[test]
    fn pass_compounds_end_in_pass() {
        for w in PASS_COMPOUNDS {
            assert!(
                w.ends_with("pass"),
                "{w:?}: is_password_word looks up only words ending in pass"
            );
            assert!(is_password_word(w.as_bytes()), "{w}");
        }
    }

    #[test]
    fn file_extensions_start_at_the_last_dot() {
        for e in FILE_EXTENSIONS {
            let rest = e.strip_prefix('.').expect("an extension starts with a dot");
            assert!(
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{e:?}: a dot, then lower-case letters and digits"
            );
        }
        assert!(disqualified(b"server.pem", b"key"));
        assert!(disqualified(b"Server.PEM", b"key"));
        assert!(!disqualified(b".pem", b"key") && !disqualified(b"Kq7.pemx2Zr9", b"key"));
    }

    #[test]
    fn names_split_into_words() {
        let words = |name: &[u8]| {
            words(name)
                .iter()
                .map(|w| String::from_utf8(w.to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(words(b"MYSQL_ROOT_PASSWORD"), ["mysql", "root", "password"]);
        assert_eq!(words(b"pdbAdminPassword"), ["pdb", "admin", "password"]);
        assert_eq!(words(b"APIKey"), ["api", "key"]);
        assert_eq!(
            words(b"spring.datasource.password"),
            ["spring", "datasource", "password"]
        );
        assert_eq!(words(b"--db-pass"), ["db", "pass"]);
        let long = "Very_Long_Name_With_More_Than_Twelve_Words_In_It_So_It_Spills_To_The_Heap";
        assert_eq!(words(long.as_bytes()).len(), 16);
        assert_eq!(words(long.as_bytes())[15], "heap");
    }

    #[test]
    fn names_are_classified_by_their_last_secret_word() {
        use KeyClass::*;
        assert_eq!(classify_name(b"DB_PASSWORD"), Some(Password));
        assert_eq!(classify_name(b"password_confirmation"), Some(Password));
        assert_eq!(classify_name(b"client_secret"), Some(Secret));
        assert_eq!(classify_name(b"apiKey"), Some(Secret));
        assert_eq!(classify_name(b"AWS_SECRET_ACCESS_KEY"), Some(Secret));
        assert_eq!(classify_name(b"password_length"), None);
        assert_eq!(classify_name(b"public_key"), None);
        assert_eq!(classify_name(b"monkey"), None);
        assert_eq!(classify_name(b"key"), None);
        assert_eq!(classify_name(b"bypass"), None);
        assert_eq!(classify_name(b"token_url"), None);
        assert_eq!(classify_name(b"min_password_len"), None);
    }
}
