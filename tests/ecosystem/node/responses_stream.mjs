// The npm openai package streaming a Responses call, as a user would write it.
// Only the key and the base URL differ from a call to DashScope: both come from the
// environment (OPENAI_API_KEY, OPENAI_BASE_URL), which the SDK reads by itself.
// Prints one JSON line per thing a user would look at.
import OpenAI from "openai";

const client = new OpenAI();
const stream = await client.responses.create({
  model: "qwen3-max-2026-01-23",
  input: "What is 123 to the power of 21?",
  tools: [{ type: "code_interpreter" }],
  enable_thinking: true, // a top-level parameter in the Node.js SDK
  stream: true,
});

let reasoning = "";
let text = "";
for await (const event of stream) {
  if (event.type === "response.reasoning_summary_text.delta") {
    reasoning += event.delta;
  } else if (event.type === "response.output_text.delta") {
    text += event.delta;
  } else if (event.type === "response.output_item.done" && event.item.code !== undefined) {
    console.log(JSON.stringify({ code: event.item.code, logs: event.item.outputs[0].logs }));
  } else if (event.type === "response.completed") {
    const usage = event.response.usage;
    console.log(JSON.stringify({
      count: usage.x_tools.code_interpreter.count,
      message: event.response.output.filter((item) => item.type === "message")
        .map((item) => item.content[0].text).join(""),
      total_tokens: usage.total_tokens,
    }));
  }
}
console.log(JSON.stringify({ reasoning, text }));
