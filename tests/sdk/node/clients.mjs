// The official OpenAI and Anthropic Node SDKs as gateway clients, for
// tests/sdk/test_node_sdks.py: `node clients.mjs ACTION CONTENT` runs one
// call and prints what the SDK saw as one JSON line. The gateway URL and the
// Keyward key come from the environment (KEYWARD_URL, KEYWARD_KEY), never argv.
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";

const [action, content] = process.argv.slice(2);
const baseURL = process.env.KEYWARD_URL;
const apiKey = process.env.KEYWARD_KEY;
const maxRetries = Number(process.env.MAX_RETRIES ?? "0");
const openai = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey, maxRetries, timeout: 20000 });
const anthropic = new Anthropic({ baseURL, apiKey, maxRetries, timeout: 20000 });
const messages = [{ role: "user", content }];

const actions = {
  async "openai-chat"() {
    const r = await openai.chat.completions.create({ model: "gpt-4o-mini", messages });
    return { text: r.choices[0].message.content, usage: r.usage };
  },
  async "openai-stream"() {
    const stream = await openai.chat.completions.create({ model: "gpt-4o-mini", messages, stream: true });
    const seen = { chunks: 0, usageChunks: 0, emptyChoices: 0, text: "" };
    for await (const chunk of stream) {
      seen.chunks += 1;
      if (chunk.usage) seen.usageChunks += 1;
      if (chunk.choices.length === 0) seen.emptyChoices += 1;
      seen.text += chunk.choices[0]?.delta?.content ?? "";
    }
    return seen;
  },
  async "openai-stream-usage"() {
    const stream = await openai.chat.completions.create({
      model: "gpt-4o-mini", messages, stream: true, stream_options: { include_usage: true },
    });
    let usage = null;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    return { usage };
  },
  async "anthropic-message"() {
    const r = await anthropic.messages.create({ model: "claude-3-5-haiku-latest", max_tokens: 64, messages });
    return { text: r.content[0].text, usage: r.usage };
  },
  async "anthropic-stream"() {
    const stream = anthropic.messages.stream({ model: "claude-3-5-haiku-latest", max_tokens: 64, messages });
    const final = await stream.finalMessage();
    return { usage: final.usage };
  },
};

const started = Date.now();
try {
  const out = await actions[action]();
  console.log(JSON.stringify({ ok: true, elapsedMs: Date.now() - started, ...out }));
} catch (e) {
  // The SDKs' own error classes: what a Node application would catch.
  const headers = e.headers ? Object.fromEntries(e.headers.entries?.() ?? Object.entries(e.headers)) : {};
  console.log(JSON.stringify({
    ok: false,
    elapsedMs: Date.now() - started,
    errorClass: e.constructor.name,
    status: e.status ?? null,
    retryAfter: headers["retry-after"] ?? null,
    error: e.error ?? null,
  }));
}
