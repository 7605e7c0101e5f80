//! Engine behaviour independent of any one rule file: prefiltering, overlap
//! resolution, decoding, redaction, user rules.

use keyward_detect::{checksum, parse_rules, Detector, DetectorBuilder};

fn gh(seed: &str) -> String {
    checksum::github_style_seal("ghp_", seed)
}

const SEED: &str = "Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0Fa";

#[test]
fn redaction_replaces_every_secret_with_its_rule_marker() {
    let d = Detector::builtin();
    let key = checksum::keyward_key_seal("kw_dev_Q7mZx2Lp9Vt4Rk8Nw3Hs6Bc1Df5Gj0Ya");
    let text = format!("é token={} and key {key}.", gh(SEED));
    let red = d.redact(&text);
    assert_eq!(
        red,
        "é token=[REDACTED:github-classic-pat] and key [REDACTED:keyward-client-key]."
    );
    let clean = "nothing here";
    assert!(matches!(d.redact(clean), std::borrow::Cow::Borrowed(_)));
}

#[test]
fn keywords_match_case_insensitively_but_patterns_decide() {
    let d = Detector::builtin();
    // Keyword present, shape wrong: no finding. Checksum wrong: no finding.
    assert!(d.find(b"ghp_short").is_empty());
    let mut bad = gh(SEED).into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    assert!(d.find(&bad).is_empty());
}

#[test]
fn secrets_inside_json_escapes_and_percent_encoding_map_to_original_spans() {
    let d = Detector::builtin();
    let tok = gh(SEED);
    // A JSON-escaped document inside a JSON string.
    let text = format!(r#"{{"payload": "{{\"token\":\"{tok}\"}}"}}"#);
    let f = d.find(text.as_bytes());
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        &text[f[0].start..f[0].end],
        tok,
        "raw match wins over the decoded duplicate"
    );

    let key = checksum::keyward_key_seal("kw_prod_Q7mZx2Lp9Vt4Rk8Nw3Hs6Bc1Df5Gj0Ya");
    let url = format!("https://h/cb?k=%6B%77_{}", &key[3..]);
    let f = d.find(url.as_bytes());
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].secret, key.as_bytes());
    assert_eq!(&url[f[0].start..f[0].end], format!("%6B%77_{}", &key[3..]));
}

#[test]
fn user_rules_join_and_disabled_rules_leave() {
    let extra = parse_rules(
        "user.toml",
        r#"
[[rule]]
id = "acme-token"
name = "ACME"
provider = "ACME"
keywords = ["acme_"]
pattern = '''\b(acme_[a-z0-9]{20})\b'''
"#,
    )
    .unwrap();
    let d = DetectorBuilder::default()
        .add_rules(extra)
        .disable(["github-classic-pat".to_string()])
        .build()
        .unwrap();
    let text = format!("acme_k3j5h7g9f1d2s4a6q8w0 {}", gh(SEED));
    let ids: Vec<_> = d
        .find(text.as_bytes())
        .iter()
        .map(|f| d.rule(f).id().to_string())
        .collect();
    assert_eq!(ids, vec!["acme-token"]);
    let err = DetectorBuilder::default()
        .disable(["nope".to_string()])
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("nope"));
    let dup = parse_rules("d.toml", "[[rule]]\nid='github-classic-pat'\nname='x'\nprovider='x'\nkeywords=['ab']\npattern='ab'\n").unwrap();
    assert!(DetectorBuilder::default().add_rules(dup).build().is_err());
}

#[test]
fn invalid_rules_are_refused_with_the_reason() {
    let bad = parse_rules(
        "b.toml",
        "[[rule]]\nid='x-y'\nname='x'\nprovider='x'\nkeywords=['ab']\npattern='(unclosed'\n",
    )
    .unwrap();
    let e = DetectorBuilder::default()
        .without_builtin()
        .add_rules(bad)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("invalid pattern"), "{e}");
    assert!(parse_rules("c.toml", "[[rule]]\nid='x'\nbogus=1\n").is_err());
}

#[test]
fn invalid_utf8_and_binary_noise_do_not_panic() {
    let d = Detector::builtin();
    let mut data = vec![0xff, 0xfe, 0x00, 0xc3];
    data.extend_from_slice(gh(SEED).as_bytes());
    data.extend_from_slice(&[0xe2, 0x82]);
    assert_eq!(d.find(&data).len(), 1);
}

#[test]
fn a_match_starting_inside_the_previous_matchs_trailing_context_is_found() {
    // The first URI's match ends one byte into its host (`@p`), which is where
    // the second URI starts: resuming after the whole match would skip it, and
    // it would only surface when the redacted text was scanned again.
    let d = Detector::builtin();
    // Built at run time so that the repository's own scan stays clean.
    let uri = |password: &str, rest: &str| format!("postgres://app:{password}@{rest}");
    let text = uri("Xy7pQ2wZr4vT9", &uri("Kq9vL3mTz8Nw2H", "db.internal/app"));
    let red = d.redact(&text);
    assert_eq!(
        red.matches("[REDACTED:").count(),
        2,
        "both passwords are secrets: {red}"
    );
    assert!(
        d.find(red.as_bytes()).is_empty(),
        "redaction is final: {red}"
    );
}

#[test]
fn a_secret_right_after_a_json_escape_is_found_for_every_token_kind() {
    let d = Detector::builtin();
    let github = gh(SEED);
    let keyward = checksum::keyward_key_seal("kw_prod_Q7mZx2Lp9Vt4Rk8Nw3Hs6Bc1Df5Gj0Ya");
    let anthropic = format!("sk-ant-api03-{}AA", &"Zq8vLm3TxR0wK5pN".repeat(6)[..93]);
    for tok in [github.as_str(), keyward.as_str(), anthropic.as_str()] {
        assert_eq!(d.find(tok.as_bytes()).len(), 1, "{tok} is found on its own");
        for escape in [r"\n", r"\t", r"\r", r#"\""#, r"\/", r"\b", r"\f"] {
            let text = format!(r#"{{"a":"line1{escape}{tok}"}}"#);
            let f = d.find(text.as_bytes());
            assert_eq!(f.len(), 1, "{escape} before {tok}: {f:?}");
            assert_eq!(&text[f[0].start..f[0].end], tok, "span after {escape}");
        }
    }
}

/// Inputs built from one keyword fragment repeated: each keyword occurrence used to
/// cost a search of its own window, hundreds of bytes for a few bytes of input.
const HOSTILE_FRAGMENTS: &[&str] = &[
    "host= ",
    "azure ",
    "PuTTY-User-Key-File-",
    "password = ",
    "key key ",
    "api_key: \"",
    "eyJ",
    "eyJhbGciOi.eyJ",
    "-----BEGIN RSA PRIVATE KEY-----\n",
    "Basic ",
    "Bearer ",
    "https://u:p@",
    "postgres://",
    "\\nghp_",
    "<password>",
    "AKIA",
    "sk-",
    "xoxb-",
    "token=",
    // Keyword every few bytes, and values the judge reads in full.
    "pwd=",
    "key=",
    "--password ",
    "pass='a' ",
    "secret=\"a\",",
    "Authorization: Basic ",
    "--user ",
    // A finding every dozen bytes.
    "pass=abcd\n",           // keyward:allow (a fixture, not a password)
    "token='Kq7Zr9Xw2Lm4' ", // keyward:allow (a fixture, not a token)
];

#[test]
fn the_work_of_a_search_is_linear_in_its_input_whatever_the_input() {
    let d = Detector::builtin();
    let len = 256 << 10;
    for fragment in HOSTILE_FRAGMENTS {
        let text = fragment.repeat(len / fragment.len());
        let w = d.work(text.as_bytes());
        let per_byte = (w.searched + w.matched) as f64 / text.len() as f64;
        println!(
            "{fragment:?}: scanned {:.2}, regex {per_byte:.2} bytes per input byte",
            w.scanned as f64 / text.len() as f64
        );
        assert!(
            per_byte <= 12.0,
            "{fragment:?} repeated: regexes searched {per_byte:.1} bytes per input byte"
        );
        assert!(
            w.scanned <= 3 * text.len(),
            "{fragment:?}: decoded regions rescanned {} bytes",
            w.scanned
        );
    }
}

#[test]
fn tokens_split_by_invisible_characters_or_glued_to_a_name_are_found() {
    let d = Detector::builtin();
    let tok = gh(SEED);
    for invisible in [
        "\u{200B}", "\u{200C}", "\u{200D}", "\u{2060}", "\u{FEFF}", "\u{00AD}",
    ] {
        let split = format!("{}{invisible}{}", &tok[..10], &tok[10..]);
        let text = format!("token: {split} end");
        let f = d.find(text.as_bytes());
        assert_eq!(f.len(), 1, "{invisible:?}: {f:?}");
        assert_eq!(
            f[0].secret,
            tok.as_bytes(),
            "the secret is the token without the mark"
        );
        assert_eq!(
            &text[f[0].start..f[0].end],
            split,
            "the span covers the mark"
        );
        assert_eq!(d.redact(&text), "token: [REDACTED:github-classic-pat] end");
    }
    // Glued on either side, or two tokens back to back: the checksum decides.
    for glued in [
        format!("MY_{tok}"),
        format!("MY{tok}"),
        format!("{tok}a"),
        format!("x{tok}{tok}"),
    ] {
        let f = d.find(glued.as_bytes());
        assert!(!f.is_empty(), "{glued}: {f:?}");
        assert!(f.iter().all(|f| f.secret == tok.as_bytes()), "{f:?}");
        assert!(!d.redact(&glued).contains(&tok), "{glued}");
    }
}

#[test]
fn base64_wrapped_across_lines_or_right_after_an_escape_is_decoded() {
    use base64::Engine as _;
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let d = Detector::builtin();
    let tok = gh(SEED);
    let config = format!(
        "# deploy settings for the staging cluster\nregistry: ghcr.io/acme\nGITHUB_TOKEN={tok}\nretries: 3\n"
    );
    let encoded = b64(&config);
    let wrap = |width: usize, sep: &str| {
        encoded
            .as_bytes()
            .chunks(width)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(sep)
    };
    // The token straddles a line break at every one of these widths.
    for (width, sep) in [
        (60, "\n"),
        (64, "\r\n"),
        (76, "\n    "),
        (60, "\\n"),
        (64, "\\r\\n"),
    ] {
        let wrapped = wrap(width, sep);
        let text = format!("data:\n  {wrapped}\n");
        let f = d.find(text.as_bytes());
        assert_eq!(f.len(), 1, "width {width} sep {sep:?}: {f:?}");
        assert_eq!(f[0].secret, tok.as_bytes());
        assert!(
            !d.redact(&text).contains(&wrapped[..width]),
            "the whole block is redacted"
        );
    }
    // A line of binary base64 above a line that encodes text: not one block, and
    // the second line is still decoded on its own.
    let binary: Vec<u8> = (0u8..60).map(|i| i.wrapping_mul(97) ^ 0xA5).collect();
    let above = base64::engine::general_purpose::STANDARD.encode(binary);
    let below = b64(&format!("token {tok} end"));
    assert!(
        below.len() <= above.len(),
        "the two lines could be one block"
    );
    let stacked = format!("{above}\n{below}\n");
    let f = d.find(stacked.as_bytes());
    assert_eq!(f.len(), 1, "{stacked}: {f:?}");
    assert_eq!(f[0].secret, tok.as_bytes());

    // `\n` right before the encoding inside a JSON string.
    let json = format!(r#"{{"a":"line1\n{}"}}"#, b64(&format!("token {tok} end")));
    let f = d.find(json.as_bytes());
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].secret, tok.as_bytes());
}

/// The URL-credentials rule reads its candidates in code; the same rule run through
/// its pattern must find exactly the same secrets.
mod url_credentials_read_in_code {
    use super::*;
    use proptest::prelude::*;

    fn detector(parse_in_code: bool) -> &'static Detector {
        static BOTH: std::sync::OnceLock<[Detector; 2]> = std::sync::OnceLock::new();
        &BOTH.get_or_init(|| [build(false), build(true)])[usize::from(parse_in_code)]
    }

    fn build(parse_in_code: bool) -> Detector {
        let mut spec = keyward_detect::builtin_specs()
            .into_iter()
            .find(|s| s.id == "uri-embedded-credentials")
            .expect("the rule exists");
        if !parse_in_code {
            spec.parse = None;
        }
        DetectorBuilder::default()
            .without_builtin()
            .without_decoding()
            .add_rules([spec])
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn in_code_and_pattern_agree(
            pieces in proptest::collection::vec(
                prop_oneof![
                    Just("https://"), Just("://"), Just("s3+x.y://"), Just("_db://"),
                    Just(":"), Just("@"), Just("@@"), Just("/"), Just("?"), Just(" "),
                    Just("Zq8vLm3TxR0wK5pN"), Just("ci-bot"), Just("db.acme.net"),
                    Just("[::1]"), Just("x"), Just("#"), Just(","), Just("\n"), Just("%"),
                ],
                0..24,
            ),
        ) {
            let text = pieces.concat();
            let spans = |d: &'static Detector| {
                d.find(text.as_bytes()).iter().map(|f| (f.start, f.end)).collect::<Vec<_>>()
            };
            prop_assert_eq!(spans(detector(true)), spans(detector(false)), "{:?}", text);
        }
    }
}

/// The flag, XML-element, JWT and Basic rules read their candidates in code; they must find
/// every secret the same rules find through their patterns. They may find more:
/// a pattern's search resumes after a match its check refused, so the refused
/// one can hide a later candidate that starts inside it (`ENV passwordENV
/// password 9Qm…`: the pattern tries `passwordENV` only); code tries every
/// keyword occurrence.
mod flags_and_xml_elements_read_in_code {
    use super::*;
    use proptest::prelude::*;

    const RULES: &[&str] = &[
        "password-flag",
        "secret-flag",
        "password-xml-element",
        "secret-xml-element",
        "jwt",
        "http-basic-auth",
    ];

    fn detector(parse_in_code: bool) -> &'static Detector {
        static BOTH: std::sync::OnceLock<[Detector; 2]> = std::sync::OnceLock::new();
        &BOTH.get_or_init(|| [build(false), build(true)])[usize::from(parse_in_code)]
    }

    fn build(parse_in_code: bool) -> Detector {
        let specs: Vec<_> = keyward_detect::builtin_specs()
            .into_iter()
            .filter(|s| RULES.contains(&s.id.as_str()))
            .map(|mut s| {
                assert!(s.parse.is_some(), "{} reads in code", s.id);
                if !parse_in_code {
                    s.parse = None;
                }
                s
            })
            .collect();
        assert_eq!(specs.len(), RULES.len());
        DetectorBuilder::default()
            .without_builtin()
            .without_decoding()
            .add_rules(specs)
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn in_code_and_pattern_agree(
            pieces in proptest::collection::vec(
                prop_oneof![
                    Just("--"), Just("-"), Just(" "), Just("\t"), Just("    "), Just("ENV "),
                    Just("arg\t"), Just("XENV  "), Just("DB_"), Just("_"), Just("."), Just(":"),
                    Just("password"), Just("PWD"), Just("Pass"), Just("secret"), Just("token"),
                    Just("Key"), Just("auth"), Just("salt"), Just("cred"), Just(">"), Just("<"),
                    Just("</"), Just("\""), Just("'"), Just("("), Just("="), Just("&"), Just("`"),
                    Just("\n"), Just("\x0b"), Just("a"), Just("9Qm2Xw7Lz4Vb1Kt8Rp3Nc6Hd0Fy5Gs2Ja"),
                    Just("hunter2!x"), Just("Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc"), Just("abcdefghijklmnopqrstuvwxyz01234"),
                    Just("eyJhbGciOiJIUzI1NiJ9"), Just("eyJzdWIiOiJ4In0"), Just("eyJ"), Just("EYJ"),
                    Just("7Qm2Xw9Lz4Vb1Kt8Rp3Nc6Hd0Fy5Gs2Ja"), Just(".eyJzdWIiOiJ4In0."),
                    Just("Basic"), Just("bAsIc"), Just("YWRtaW46czNjcjN0LXBhc3M"), Just("ZGVw"),
                    Just("="), Just("+"), Just("/"), Just("bG9naW46cGFzc3dvcmQ"), Just("     "),
                ],
                0..24,
            ),
        ) {
            let text = pieces.concat();
            let found = |d: &'static Detector| {
                d.find(text.as_bytes())
                    .iter()
                    .map(|f| (d.rule(f).id().to_string(), f.start, f.end))
                    .collect::<Vec<_>>()
            };
            let in_code = found(detector(true));
            for f in found(detector(false)) {
                prop_assert!(in_code.contains(&f), "{:?} missed in {:?}", f, text);
            }
        }
    }

    #[test]
    fn a_refused_candidate_does_not_hide_the_next() {
        let text = "ENV passwordENV password 9Qm2Xw7Lz4Vb1Kt8Rp3Nc6Hd0Fy5Gs2Ja\n";
        let found = detector(true).find(text.as_bytes());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].secret, b"9Qm2Xw7Lz4Vb1Kt8Rp3Nc6Hd0Fy5Gs2Ja");
        assert!(detector(false).find(text.as_bytes()).is_empty());
    }
}

/// Rules whose keywords count only in their own case find what they found when
/// every case counted.
mod case_sensitive_keywords {
    use super::*;
    use proptest::prelude::*;

    fn detector(case_sensitive: bool) -> &'static Detector {
        static BOTH: std::sync::OnceLock<[Detector; 2]> = std::sync::OnceLock::new();
        &BOTH.get_or_init(|| [build(false), build(true)])[usize::from(case_sensitive)]
    }

    fn build(case_sensitive: bool) -> Detector {
        let specs: Vec<_> = keyward_detect::builtin_specs()
            .into_iter()
            .filter(|s| s.keywords_case_sensitive)
            .map(|mut s| {
                s.keywords_case_sensitive = case_sensitive;
                s
            })
            .collect();
        assert!(specs.len() >= 4, "curl, mailchimp and the PuTTY rules");
        DetectorBuilder::default()
            .without_builtin()
            .add_rules(specs)
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn findings_do_not_change(
            pieces in proptest::collection::vec(
                prop_oneof![
                    Just(" -u "), Just(" -U "), Just("--user="), Just("--USER "), Just("ci:"),
                    Just("Zq8vLm3TxR0wK5pN"), Just("0123456789abcdef0123456789abcdef"),
                    Just("-us12"), Just("-US12"), Just(" "), Just("\n"),
                    Just("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: k\nPublic-Lines: 1\nAAAAC3NzaC1lZDI1NTE5AAAAINTwrkQH8T4ewpRSg/xPCJ+ePDk2KYS45xNgt7A7\nPrivate-Lines: 1\nAAAAIB0D1i5B4h4sN9987WaEMxjfEBexGim/Upg86ivuz/Rn\nPrivate-MAC: 5b2f3d8a0c6e41f7a9d2b8e3c4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d"), // keyward:allow (a PuTTY example key)
                    Just("putty-user-key-file-3: x"),
                ],
                0..12,
            ),
        ) {
            let text = pieces.concat();
            let found = |d: &'static Detector| {
                d.find(text.as_bytes()).iter().map(|f| (f.rule, f.start, f.end)).collect::<Vec<_>>()
            };
            prop_assert_eq!(found(detector(true)), found(detector(false)), "{:?}", text);
        }
    }
}

/// A thread reuses the vectors of its earlier searches: what one search found,
/// for whichever detector, never leaks into the next.
#[test]
fn searches_on_one_thread_share_nothing_but_memory() {
    let all = Detector::builtin();
    let one = DetectorBuilder::default()
        .without_builtin()
        .add_rules(
            keyward_detect::builtin_specs()
                .into_iter()
                .filter(|s| s.id == "jwt"),
        )
        .build()
        .unwrap();
    let tok = gh("Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0Fa");
    let dense = format!("{}token = {tok}\n", "key key password = ".repeat(5000));
    let clean = "key key password = ".repeat(100);
    for _ in 0..3 {
        let found = all.find(dense.as_bytes());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].secret, tok.as_bytes());
        assert!(all.find(clean.as_bytes()).is_empty());
        assert!(one.find(dense.as_bytes()).is_empty());
        // Nested: the token inside a JSON string's escapes.
        let escaped = format!("{{\"a\":\"x\\n{tok}\"}}");
        assert_eq!(all.find(escaped.as_bytes()).len(), 1);
    }
}
