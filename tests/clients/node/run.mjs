// Real Node clients against our /v1: `node run.mjs <baseUrl> <case> [apiKey]` prints one JSON result line.
// Driven by tests/integration/web/test_node_clients.py (and, with a key, tests/integration/functions/
// test_aws_clients.py); the versions are pinned in package.json.
import OpenAI from "openai";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";

const [base, which, apiKey = "unused-locally"] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0 });
const provider = createOpenAI({ baseURL: `${base}/v1`, apiKey });
const model = "fake/model-a";
const messages = [{ role: "user", content: "hello node" }];

const cases = {
  async "openai-chat"() {
    const answer = await client.chat.completions.create({ model, messages });
    return { text: answer.choices[0].message.content, tokens: answer.usage.total_tokens };
  },
  async "openai-chat-stream"() {
    const stream = await client.chat.completions.create({ model, messages, stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    return { text };
  },
  async "openai-responses-stream"() {
    const stream = await client.responses.create({ model, input: "hello node", stream: true });
    let text = "";
    let last = "";
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") text += event.delta;
      last = event.type;
    }
    return { text, last };
  },
  async "openai-responses-stream-fails"() {
    // The stream fails midway: the Responses API's `response.failed` ends it, a typed event, not a throw.
    const stream = await client.responses.create({ model, input: "hello node", stream: true });
    let last = null;
    for await (const event of stream) last = event;
    return { last: last.type, status: last.response.status, code: last.response.error.code, message: last.response.error.message };
  },
  async "ai-default-stream-fails"() {
    // The AI SDK reports the response's failure as an error part with the gateway's message.
    const result = streamText({ model: provider(model), prompt: "hello node", onError() {} });
    const errors = [];
    for await (const part of result.fullStream) if (part.type === "error") errors.push(String(part.error?.message ?? part.error));
    return { errors };
  },
  async "openai-retrieve"() {
    const found = await client.models.retrieve("anthropic/claude-sonnet-4.5");
    return { id: found.id, owned_by: found.owned_by };
  },
  async "openai-error"() {
    try {
      await client.chat.completions.create({ model, messages });
      return { status: 200 };
    } catch (err) {
      return { status: err.status, code: err.code, type: err.type, param: err.param };
    }
  },
  async "ai-default"() {
    // `provider(model)` is the Responses API in @ai-sdk/openai 3.
    const result = await generateText({ model: provider(model), prompt: "hello node" });
    return { text: result.text, input: result.usage.inputTokens, output: result.usage.outputTokens };
  },
  async "ai-default-stream"() {
    const result = streamText({ model: provider(model), prompt: "hello node" });
    let text = "";
    for await (const part of result.textStream) text += part;
    return { text };
  },
  async "ai-chat"() {
    const result = await generateText({ model: provider.chat(model), prompt: "hello node" });
    return { text: result.text, input: result.usage.inputTokens };
  },
  async "ai-chat-stream"() {
    const result = streamText({ model: provider.chat(model), prompt: "hello node" });
    let text = "";
    for await (const part of result.textStream) text += part;
    return { text };
  },
};

try {
  console.log(JSON.stringify(await cases[which]()));
} catch (err) {
  console.log(JSON.stringify({ failed: String(err), status: err.statusCode ?? err.status }));
  process.exitCode = 1;
}
