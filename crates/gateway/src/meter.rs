//! The metering tap: reads each response's usage as it passes (whole bodies,
//! server-sent events, streamed JSON arrays) and records it once per request,
//! also when the client goes away mid-stream (then as incomplete, with what was
//! reported so far).
//!
//! For OpenAI chat streams the gateway asks for usage
//! (`stream_options.include_usage`) when the client did not, and takes the extra
//! usage-only chunk out of the stream again: the client sees what it asked for.

use crate::api::Family;
use crate::prices::Price;
use crate::usage::{Usage, UsageRecord, UsageSink};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use std::pin::Pin;
use std::sync::Arc;

/// Most of a non-SSE body kept to read its usage when the body itself streams
/// through unbuffered (redaction off).
const MAX_COPY: usize = 8 << 20;

/// One request's meter. Recorded at most once: by [`Meter::finish`], or on drop
/// (a response abandoned before its end): complete if its final usage report
/// had been seen by then (clients often close at the last event), else
/// incomplete with what was reported so far.
pub struct Meter {
    sink: Arc<dyn UsageSink>,
    /// Whose wire format the responses are in (where usage is reported).
    family: Family,
    record: Option<UsageRecord>,
    price: Option<Price>,
    usage: Usage,
    /// Whether the provider reported any usage at all.
    usage_seen: bool,
    final_seen: bool,
    /// The request's concurrency slot (released with the meter) and the scopes
    /// its tokens are charged to.
    limits: Option<(Arc<dyn crate::limits::Limiter>, crate::limits::Admitted)>,
    /// The request's budget reservation, settled to its real cost.
    reservation: Option<crate::budget::Reservation>,
}

impl Meter {
    /// A meter for the request `template` describes (its usage and completeness
    /// are filled in here), answered in `family`'s format. `price` is `None` for
    /// a model without a known price.
    pub fn new(
        sink: Arc<dyn UsageSink>,
        family: Family,
        template: UsageRecord,
        price: Option<Price>,
    ) -> Meter {
        Meter {
            sink,
            family,
            record: Some(template),
            price,
            usage: Usage::default(),
            usage_seen: false,
            final_seen: false,
            limits: None,
            reservation: None,
        }
    }

    /// Settles `reservation` to the request's real cost when the meter records.
    /// A successful answer that reported no usage (however the request was
    /// phrased to avoid it) is charged its worst case: a cost that is unknown is
    /// never taken as zero. A provider error costs nothing.
    pub fn with_budget(mut self, reservation: crate::budget::Reservation) -> Meter {
        self.reservation = Some(reservation);
        self
    }

    /// Holds the request's admission until the response ends: its slot is freed
    /// and its tokens charged when the meter records.
    pub fn with_limits(
        mut self,
        limiter: Arc<dyn crate::limits::Limiter>,
        admitted: crate::limits::Admitted,
    ) -> Meter {
        self.limits = Some((limiter, admitted));
        self
    }

    pub fn set_status(&mut self, status: u16) {
        if let Some(r) = &mut self.record {
            r.status = status;
        }
    }

    /// Whose wire format the responses are in.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Folds in the usage one JSON value reports, if any (arrays: every element).
    pub fn observe(&mut self, v: &Value) {
        self.add_usage(usage_of(self.family, v));
    }

    /// Folds in usage read elsewhere (see [`usage_of_body`]); `None` adds nothing.
    pub fn add_usage(&mut self, usage: Option<Usage>) {
        if let Some(u) = usage {
            self.usage.merge(u);
            self.usage_seen = true;
        }
    }

    /// Records the request. `complete`: the response ended normally.
    pub fn finish(&mut self, complete: bool) {
        let status = self.record.as_ref().map(|r| r.status);
        if let Some(mut r) = self.record.take() {
            r.usage = self.usage;
            r.complete = complete;
            r.cost_pico = self.price.map(|p| p.cost(&self.usage));
            self.sink.record(r);
        }
        if let Some(reservation) = self.reservation.take() {
            let failed = status.is_some_and(|s| !(200..300).contains(&s));
            match self.price {
                Some(p) if self.usage_seen => reservation.settle(p.cost(&self.usage)),
                _ if failed && complete => reservation.settle(0),
                Some(_) => drop(reservation), // charged its worst case
                None => reservation.settle(0),
            }
        }
        if let Some((limiter, admitted)) = self.limits.take() {
            limiter.charge_tokens(&admitted.scopes, self.usage.total());
            drop(admitted.permit);
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.finish(self.final_seen);
    }
}

/// Whether a chat request asks to stream without usage: the gateway then adds
/// `stream_options.include_usage` (see [`ask_for_stream_usage`]).
fn wants_usage_added(v: &Value) -> bool {
    v.get("stream").and_then(Value::as_bool) == Some(true)
        && v.get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            != Some(true)
}

/// The usage one JSON value in `family`'s format reports, if any (arrays: their
/// elements' reports folded with [`Usage::merge`], as a stream's are).
pub fn usage_of(family: Family, v: &Value) -> Option<Usage> {
    match v {
        Value::Array(items) => {
            items
                .iter()
                .fold(None, |sum, item| match (sum, usage_of(family, item)) {
                    (Some(mut a), Some(b)) => {
                        a.merge(b);
                        Some(a)
                    }
                    (a, b) => a.or(b),
                })
        }
        v => family.adapter().usage(v),
    }
}

/// The usage a whole JSON body reports; `None` when it reports none or is not JSON.
pub fn usage_of_body(family: Family, body: &[u8]) -> Option<Usage> {
    crate::usage_view::UsageView::of(body).and_then(|v| usage_of(family, &v.0))
}

/// For an OpenAI chat completion that streams without usage, the body with
/// `stream_options.include_usage = true` and `true`; otherwise the body as it
/// was and `false`.
pub fn ask_for_stream_usage(body: Bytes) -> (Bytes, bool) {
    // Most requests do not stream: they are not parsed here at all.
    if memchr::memmem::find(&body, b"\"stream\"").is_none() {
        return (body, false);
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
        return (body, false);
    };
    if !wants_usage_added(&v) {
        return (body, false);
    }
    let Some(o) = v.as_object_mut() else {
        return (body, false);
    };
    let opts = o
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Default::default()));
    match opts.as_object_mut() {
        Some(opts) => {
            opts.insert("include_usage".into(), Value::Bool(true));
        }
        None => return (body, false),
    }
    match serde_json::to_vec(&v) {
        Ok(b) => (Bytes::from(b), true),
        Err(_) => (body, false),
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = crate::upstream_client::Chunk> + Send>>;

/// The JSON of an event's `data:` lines, when it may carry usage or end the
/// stream.
fn event_json(event: &[u8]) -> Option<Value> {
    // `usage`, `usageMetadata`, `message_stop`, `finishReason`: the common event
    // is skipped unparsed.
    if memchr::memmem::find(event, b"sage").is_none()
        && memchr::memmem::find(event, b"_stop").is_none()
        && memchr::memmem::find(event, b"inishReason").is_none()
    {
        return None;
    }
    let text = std::str::from_utf8(event).ok()?;
    let mut data = String::new();
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    serde_json::from_str(&data).ok()
}

/// Meters a server-sent event stream as it passes, event by event (a partial
/// event waits for its end, as any SSE parser would). With `strip_usage_chunk`,
/// the usage-only chat chunk the gateway asked for is left out.
pub fn sse<S>(upstream: S, meter: Meter, strip_usage_chunk: bool) -> ByteStream
where
    S: Stream<Item = crate::upstream_client::Chunk> + Send + 'static,
{
    let state = (Box::pin(upstream), meter, Vec::<u8>::new(), false);
    Box::pin(futures_util::stream::unfold(
        state,
        move |(mut up, mut meter, mut buf, done)| async move {
            if done {
                return None;
            }
            loop {
                match up.next().await {
                    Some(Ok(piece)) => {
                        buf.extend_from_slice(&piece);
                        let mut out = Vec::new();
                        let mut start = 0;
                        while let Some(end) = crate::redact::sse_event_end(&buf[start..]) {
                            let event = &buf[start..start + end];
                            let mut keep = true;
                            if let Some(v) = event_json(event) {
                                meter.observe(&v);
                                meter.final_seen |= meter.family.adapter().is_final_event(&v);
                                keep = !(strip_usage_chunk
                                    && crate::api::openai::is_usage_only_chunk(&v));
                            }
                            if keep {
                                out.extend_from_slice(event);
                            }
                            start += end;
                        }
                        buf.drain(..start);
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), (up, meter, buf, false)));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (up, meter, buf, true))),
                    None => {
                        // An unterminated last event goes out as it is.
                        if let Some(v) = event_json(&buf) {
                            meter.observe(&v);
                        }
                        meter.finish(true);
                        let rest = std::mem::take(&mut buf);
                        return (!rest.is_empty())
                            .then(|| (Ok(Bytes::from(rest)), (up, meter, Vec::new(), true)));
                    }
                }
            }
        },
    ))
}

/// Meters a body that streams through unbuffered (a JSON document or array): a
/// copy of up to [`MAX_COPY`] bytes is read at the end.
pub fn whole<S>(upstream: S, meter: Meter) -> ByteStream
where
    S: Stream<Item = crate::upstream_client::Chunk> + Send + 'static,
{
    let state = (Box::pin(upstream), meter, Vec::<u8>::new(), false);
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut up, mut meter, mut copy, done)| async move {
            if done {
                return None;
            }
            match up.next().await {
                Some(Ok(piece)) => {
                    if copy.len() + piece.len() <= MAX_COPY {
                        copy.extend_from_slice(&piece);
                    }
                    Some((Ok(piece), (up, meter, copy, false)))
                }
                Some(Err(e)) => Some((Err(e), (up, meter, copy, true))),
                None => {
                    let family = meter.family();
                    let copy = std::mem::take(&mut copy);
                    let usage =
                        crate::offload::by_size(copy.len(), move || usage_of_body(family, &copy))
                            .await;
                    meter.add_usage(usage);
                    meter.finish(true);
                    None
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODIES: &[&str] = &[
        r#"{"id":"c1","choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#,
        r#"{"object":"response","response":{"output":[{"content":"x"}],"usage":{"input_tokens":30,"output_tokens":7,"input_tokens_details":{"cached_tokens":10}}}}"#,
        r#"{"type":"message","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":9,"output_tokens":3,"cache_read_input_tokens":2,"cache_creation_input_tokens":1}}"#,
        r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":21,"output_tokens":1}}}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":"hi"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":4,"cachedContentTokenCount":3,"thoughtsTokenCount":2}}"#,
        r#"[{"candidates":[],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":1}},{"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":6}}]"#,
        r#"{"data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":5,"total_tokens":5}}"#,
        r#"{"choices":[],"usage":null}"#,
        r#"{"usage":"none","response":[1,2],"message":"text"}"#,
        r#"{"nothing":{"usage":{"prompt_tokens":99}}}"#,
        r#"{"message":{"message":{"usage":{"input_tokens":99}}}}"#,
        r#"[[{"usage":{"prompt_tokens":99}}],{"response":[{"usage":{"prompt_tokens":7}}]}]"#,
        r#"{"a":"\u00e9\n","usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
        r#"42"#,
    ];

    #[test]
    fn every_family_reads_a_view_as_it_reads_the_whole_body() {
        for body in BODIES {
            let whole: Value = serde_json::from_str(body).unwrap();
            let view =
                crate::usage_view::UsageView::of(body.as_bytes()).expect("a JSON body has a view");
            for family in [Family::OpenAi, Family::Anthropic, Family::Gemini] {
                assert_eq!(
                    usage_of(family, &view.0),
                    usage_of(family, &whole),
                    "{family:?} on {body}"
                );
            }
        }
    }

    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorded(Mutex<Vec<UsageRecord>>);
    impl UsageSink for Recorded {
        fn record(&self, r: UsageRecord) {
            self.0.lock().unwrap().push(r);
        }
    }

    fn template() -> UsageRecord {
        UsageRecord {
            at_ms: 0,
            request_id: "req_x".into(),
            key_id: "key_x".into(),
            environment: "prod".into(),
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            endpoint: "chat.completions".into(),
            status: 200,
            usage: Usage::default(),
            cost_pico: None,
            complete: false,
            subject: None,
            owner: None,
        }
    }

    #[test]
    fn usage_is_asked_for_only_when_a_stream_lacks_it() {
        let (b, added) =
            ask_for_stream_usage(Bytes::from_static(br#"{"model":"m","stream":true}"#));
        assert!(added);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        for body in [
            &br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#[..],
            br#"{"model":"m"}"#,
            br#"not json"#,
        ] {
            let (b, added) = ask_for_stream_usage(Bytes::copy_from_slice(body));
            assert!(!added);
            assert_eq!(&b[..], body);
        }
    }

    #[tokio::test]
    async fn a_stream_is_metered_once_and_the_added_chunk_is_taken_out() {
        let sink = Arc::new(Recorded::default());
        let meter = Meter::new(
            sink.clone(),
            Family::OpenAi,
            template(),
            Some(
                crate::prices::PriceTable::builtin()
                    .lookup("gpt-4o-mini")
                    .unwrap()
                    .price,
            ),
        );
        let frames = [
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2}}\n",
            "\ndata: [DONE]\n\n",
        ];
        let up = futures_util::stream::iter(frames.map(|f| Ok(Bytes::from(f))));
        let out: Vec<Bytes> = sse(up, meter, true).map(|r| r.unwrap()).collect().await;
        let text: String = out
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert_eq!(text, format!("{}data: [DONE]\n\n", frames[0]));
        let recs = sink.0.lock().unwrap();
        assert_eq!(recs.len(), 1);
        assert!(recs[0].complete);
        assert_eq!((recs[0].usage.input, recs[0].usage.output), (11, 2));
        // 11 × $0.15/M + 2 × $0.60/M
        assert_eq!(recs[0].cost_pico, Some(11 * 150_000 + 2 * 600_000));
    }

    #[tokio::test]
    async fn an_abandoned_stream_is_recorded_as_incomplete_with_what_was_seen() {
        let sink = Arc::new(Recorded::default());
        let meter = Meter::new(sink.clone(), Family::Anthropic, template(), None);
        let frames = [
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"x\"}}\n\n",
        ];
        let up = futures_util::stream::iter(frames.map(|f| Ok(Bytes::from(f))))
            .chain(futures_util::stream::pending());
        let mut s = sse(up, meter, false);
        s.next().await.unwrap().unwrap();
        drop(s); // the client went away
        let recs = sink.0.lock().unwrap();
        assert_eq!(recs.len(), 1);
        assert!(!recs[0].complete);
        assert_eq!(recs[0].usage.input, 12);
        assert_eq!(recs[0].cost_pico, None);
    }
}
