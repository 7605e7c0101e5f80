//! Secrets in server-sent event streams, caught even when split across events.
//!
//! Each event's JSON is parsed. Fields that carry streamed text (`content`,
//! `text`, `arguments`, `partial_json`, …) are fed, per stream, to a
//! [`StreamRedactor`]: a stream is one such field at one place in the event
//! structure (per choice, tool call and content block, told apart by their
//! `index`). The event goes out at once with the text that is settled; a tail
//! that could still become a secret moves to the stream's next event. When the
//! next event does not continue that stream (a stop event, `[DONE]`, another
//! block), the held tail is first sent in an event of its own, shaped like the
//! stream's previous one but carrying only the text. Any other string is redacted
//! within its event. Events nobody changed are passed through byte for byte, so
//! framing stays exactly what the provider sent.

use keyward_detect::{Detector, StreamRedactor};
use serde_json::Value;

/// Keys whose string values are streamed text: OpenAI chat deltas and tool-call
/// arguments, Anthropic text, thinking and tool-input deltas, Gemini parts, and
/// OpenAI Responses API `delta` events.
const STREAM_FIELDS: &[&str] = &[
    "content",
    "text",
    "arguments",
    "partial_json",
    "thinking",
    "refusal",
    "reasoning_content",
    "delta",
];

/// Keys whose non-null value marks an event as a stream's last.
const FINISH_FIELDS: &[&str] = &["finish_reason", "finishReason", "stop_reason"];

/// Keys dropped from a synthetic flush event: counting usage twice would mislead.
const NOT_REPEATED: &[&str] = &["usage", "usageMetadata"];

/// One step into a JSON value.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

struct TextStream {
    key: String,
    redactor: StreamRedactor<'static>,
    /// Lines other than `data:` of the stream's last event (`event: …`).
    lines: Vec<String>,
    /// The stream's last event, and where in it the text sits.
    template: Value,
    path: Vec<Step>,
}

/// Redacts an SSE byte stream. Feed upstream bytes with [`push`](Self::push), end
/// with [`finish`](Self::finish); both return bytes ready for the client.
pub struct SseRedactor {
    detector: &'static Detector,
    /// Bytes of an event not yet complete.
    partial: Vec<u8>,
    streams: Vec<TextStream>,
    hits: Vec<&'static str>,
}

impl SseRedactor {
    pub fn new(detector: &'static Detector) -> SseRedactor {
        SseRedactor {
            detector,
            partial: Vec::new(),
            streams: Vec::new(),
            hits: Vec::new(),
        }
    }

    /// Processes every event completed by `chunk`.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.partial.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(end) = event_end(&self.partial[start..]) {
            let event = self.partial[start..start + end].to_vec();
            self.event(&event, &mut out);
            start += end;
        }
        self.partial.drain(..start);
        out
    }

    /// Ends the stream: an unterminated last event is processed, held text flushed.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.partial);
        if !rest.is_empty() {
            self.event(&rest, &mut out);
        }
        self.flush_except(&[], &mut out);
        out
    }

    /// Rule ids of the secrets redacted since the last call.
    pub fn take_hits(&mut self) -> Vec<&'static str> {
        for s in &mut self.streams {
            self.hits.extend(s.redactor.take_hits());
        }
        std::mem::take(&mut self.hits)
    }

    fn event(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        let text = String::from_utf8_lossy(raw);
        let mut lines = Vec::new();
        let mut data: Option<String> = None;
        for line in text.lines() {
            if let Some(d) = line.strip_prefix("data:") {
                let d = d.strip_prefix(' ').unwrap_or(d);
                match &mut data {
                    Some(acc) => {
                        acc.push('\n');
                        acc.push_str(d);
                    }
                    None => data = Some(d.to_string()),
                }
            } else if !line.is_empty() {
                lines.push(line.to_string());
            }
        }
        let value = data
            .as_deref()
            .and_then(|d| serde_json::from_str::<Value>(d).ok());
        let Some(mut value) = value else {
            // `[DONE]`, a comment, a keep-alive: ends whatever is held.
            self.flush_except(&[], out);
            let fs = self.detector.find(raw);
            if fs.is_empty() {
                out.extend_from_slice(raw);
            } else {
                self.hits
                    .extend(fs.iter().map(|f| self.detector.rule(f).id()));
                out.extend_from_slice(self.detector.redact(&text).as_bytes());
            }
            return;
        };
        let mut fields = Vec::new();
        let mut changed = false;
        let finishing = has_finish(&value);
        // Typed events carry streamed text only when they are deltas; others
        // (`response.output_text.done`, `message_start`) repeat whole texts.
        let deltas = value
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(|t| t.contains("delta"));
        collect(
            self.detector,
            deltas,
            &mut value,
            &mut Vec::new(),
            String::new(),
            &mut fields,
            &mut self.hits,
            &mut changed,
        );
        let touched: Vec<String> = fields.iter().map(|(k, _)| k.clone()).collect();
        self.flush_except(&touched, out);
        let event_name = lines.clone();
        // Streamed text this event brought and text it carries out.
        let (mut brought, mut carries) = (false, false);
        for (key, path) in fields {
            let slot = pointer_mut(&mut value, &path).expect("path was just collected");
            let Value::String(s) = slot else { continue };
            let stream = match self.streams.iter().position(|t| t.key == key) {
                Some(i) => &mut self.streams[i],
                None => {
                    self.streams.push(TextStream {
                        key: key.clone(),
                        redactor: StreamRedactor::prompt(self.detector),
                        lines: Vec::new(),
                        template: Value::Null,
                        path: Vec::new(),
                    });
                    self.streams.last_mut().expect("just pushed")
                }
            };
            let mut released = stream.redactor.push(s);
            if finishing {
                released.push_str(&stream.redactor.finish());
            }
            brought |= !s.is_empty();
            carries |= !released.is_empty();
            if released != *s {
                *s = released;
                changed = true;
            }
            stream.lines = event_name.clone();
            stream.path = path;
        }
        // Templates are the event as sent, so a flush event looks like its stream.
        for t in self.streams.iter_mut().filter(|t| touched.contains(&t.key)) {
            t.template = value.clone();
        }
        if brought && !carries && !finishing && is_pure_delta(&value) {
            // Everything it brought is held: an event with empty text would only
            // make clients render nothing. The text goes out with a later event.
            return;
        }
        if changed {
            write_event(&lines, &value, out);
        } else {
            out.extend_from_slice(raw);
        }
    }

    /// Sends the held text of every stream not in `keep` as events of their own.
    fn flush_except(&mut self, keep: &[String], out: &mut Vec<u8>) {
        for t in self.streams.iter_mut() {
            if keep.contains(&t.key) || t.redactor.held() == 0 {
                continue;
            }
            let text = t.redactor.finish();
            if text.is_empty() {
                continue;
            }
            let value = skeleton(&t.template, &t.path, text);
            let lines: Vec<String> = t
                .lines
                .iter()
                .filter(|l| !l.starts_with("id:"))
                .cloned()
                .collect();
            write_event(&lines, &value, out);
        }
    }
}

/// Whether an event only carries streamed text (so that, with its text held, it
/// may be left out): an OpenAI chat chunk without a role, tool-call header or
/// usage; an Anthropic `content_block_delta`; a Responses API text delta. Gemini
/// chunks and anything else are always sent.
fn is_pure_delta(v: &Value) -> bool {
    match v.get("type").and_then(Value::as_str) {
        Some("content_block_delta") => true,
        Some(t) => t.ends_with("output_text.delta"),
        None => {
            let Some(choices) = v.get("choices").and_then(Value::as_array) else {
                return false;
            };
            v.get("usage").is_none_or(Value::is_null)
                && choices.iter().all(|c| {
                    c.get("delta").and_then(Value::as_object).is_some_and(|d| {
                        d.iter().all(|(k, x)| match k.as_str() {
                            "content" => true,
                            "role" | "tool_calls" | "function_call" => x.is_null(),
                            _ => x.is_null() || x.as_str() == Some(""),
                        })
                    })
                })
        }
    }
}

/// Length of the first complete event in `buf` (through its blank line), if any.
pub fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\n', &buf[i..]) {
        let nl = i + p;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

fn write_event(lines: &[String], value: &Value, out: &mut Vec<u8>) {
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    serde_json::to_writer(&mut *out, value).expect("a JSON value serialises");
    out.extend_from_slice(b"\n\n");
}

fn has_finish(v: &Value) -> bool {
    match v {
        Value::Object(o) => o
            .iter()
            .any(|(k, x)| (FINISH_FIELDS.contains(&k.as_str()) && !x.is_null()) || has_finish(x)),
        Value::Array(a) => a.iter().any(has_finish),
        _ => false,
    }
}

/// Walks `v`: streamed-text fields are recorded as `(stream key, path)`; every
/// other string is redacted in place.
#[allow(clippy::too_many_arguments)]
fn collect(
    detector: &'static Detector,
    deltas: bool,
    v: &mut Value,
    path: &mut Vec<Step>,
    key: String,
    fields: &mut Vec<(String, Vec<Step>)>,
    hits: &mut Vec<&'static str>,
    changed: &mut bool,
) {
    match v {
        Value::Object(o) => {
            // Parallel choices, tool calls and content blocks carry an `index`.
            let key = match o.get("index").and_then(Value::as_u64) {
                Some(i) => format!("{key}#{i}"),
                None => key,
            };
            for (k, x) in o.iter_mut() {
                path.push(Step::Key(k.clone()));
                let here = format!("{key}/{k}");
                if deltas && x.is_string() && STREAM_FIELDS.contains(&k.as_str()) {
                    fields.push((here, path.clone()));
                } else {
                    collect(detector, deltas, x, path, here, fields, hits, changed);
                }
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                path.push(Step::Index(i));
                collect(
                    detector,
                    deltas,
                    x,
                    path,
                    format!("{key}[{i}]"),
                    fields,
                    hits,
                    changed,
                );
                path.pop();
            }
        }
        Value::String(s) => {
            let fs = detector.find_unescaped(s.as_bytes());
            if !fs.is_empty() {
                hits.extend(fs.iter().map(|f| detector.rule(f).id()));
                *s = detector.redact_unescaped(s).into_owned();
                *changed = true;
            }
        }
        _ => {}
    }
}

fn pointer_mut<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// An event shaped like `template` that carries `text` at `path`: the top level
/// keeps its fields (ids, model, event type), nested levels keep only the path,
/// `index` and `type`, so that clients which accumulate deltas add nothing twice.
fn skeleton(template: &Value, path: &[Step], text: String) -> Value {
    fn go(v: &Value, path: &[Step], text: String, top: bool) -> Value {
        let Some((step, rest)) = path.split_first() else {
            return Value::String(text);
        };
        match (v, step) {
            (Value::Object(o), Step::Key(k)) => {
                let mut m = serde_json::Map::new();
                for (name, x) in o {
                    if name == k {
                        m.insert(name.clone(), go(x, rest, text.clone(), false));
                    } else if (top
                        && !NOT_REPEATED.contains(&name.as_str())
                        && !FINISH_FIELDS.contains(&name.as_str()))
                        || name == "index"
                        || name == "type"
                    {
                        m.insert(name.clone(), x.clone());
                    }
                }
                Value::Object(m)
            }
            (Value::Array(a), Step::Index(i)) => Value::Array(vec![go(&a[*i], rest, text, false)]),
            _ => Value::String(text),
        }
    }
    go(template, path, text, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_detect::checksum;

    fn gh() -> String {
        let seed = "Zr4vT9qLm2Xw8Kp1Ns6Yb3Hc7Jd0Fa";
        checksum::github_style_seal("ghp_", seed)
    }

    fn openai_event(content: &str) -> String {
        format!(
            "data: {}\n\n",
            serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
        )
    }

    /// The text of every `content` delta, in order.
    fn contents(out: &[u8]) -> String {
        let text = String::from_utf8(out.to_vec()).unwrap();
        let mut s = String::new();
        for ev in text.split("\n\n").filter(|e| !e.is_empty()) {
            let data = ev.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            if data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(data).unwrap();
            if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                s.push_str(c);
            }
        }
        s
    }

    #[test]
    fn a_secret_split_across_events_and_reads_is_redacted() {
        let d = Detector::builtin();
        let t = gh();
        let (a, b) = t.split_at(10);
        let stream = [
            openai_event("Here is the token: "),
            openai_event(a),
            openai_event(b),
            openai_event(" — keep it safe."),
            format!(
                "data: {}\n\ndata: [DONE]\n\n",
                serde_json::json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            ),
        ]
        .concat();
        // Cut the byte stream at every possible point, as TCP might.
        for cut in (0..stream.len()).step_by(7) {
            let mut r = SseRedactor::new(d);
            let mut out = r.push(&stream.as_bytes()[..cut]);
            out.extend(r.push(&stream.as_bytes()[cut..]));
            out.extend(r.finish());
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(!text.contains(a) || !text.contains(b), "{text}");
            assert!(!text.contains(&t));
            assert_eq!(
                contents(&out),
                "Here is the token: [REDACTED:github-classic-pat] — keep it safe."
            );
            assert!(text.ends_with("data: [DONE]\n\n"));
            assert_eq!(r.take_hits(), vec!["github-classic-pat"]);
        }
    }

    #[test]
    fn untouched_events_pass_byte_for_byte() {
        let d = Detector::builtin();
        let raw = "event: ping\ndata: {\"type\": \"ping\"}\n\n: comment\n\n";
        let mut r = SseRedactor::new(d);
        let mut out = r.push(raw.as_bytes());
        out.extend(r.finish());
        assert_eq!(String::from_utf8(out).unwrap(), raw);
    }

    #[test]
    fn held_text_is_flushed_before_a_stop_event_in_the_stream_shape() {
        let d = Detector::builtin();
        let delta = |text: &str| {
            format!(
                "event: content_block_delta\ndata: {}\n\n",
                serde_json::json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": text}})
            )
        };
        let t = gh();
        let raw = [
            delta("token "),
            delta(&t[..20]),
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
                .to_string(),
        ]
        .concat();
        let mut r = SseRedactor::new(d);
        let mut out = r.push(raw.as_bytes());
        out.extend(r.finish());
        let text = String::from_utf8(out).unwrap();
        // The unfinished token is not a secret on its own: it comes out whole, in a
        // content_block_delta event placed before the stop event. The event that
        // brought it, with all its text held, is left out rather than sent empty.
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 3, "{text}");
        assert!(events[1].starts_with("event: content_block_delta\n"));
        assert!(events[1].contains(&t[..20]), "{text}");
        assert!(events[2].starts_with("event: content_block_stop"));
        assert!(
            !text.contains(r#""text":"""#),
            "an empty delta was sent: {text}"
        );
    }
}
