/**
 * Another chat template for a scripted GGUF model (test/support/gguf.ts writes ChatML, which node-llama-cpp renders
 * with its ChatML wrapper: one function call per response). A template that renders `tools` and `tool_calls`, as
 * Qwen 2.5's and Hermes' do, is read by node-llama-cpp's Jinja wrapper, which learns the call syntax from it,
 * parallel calls included: a response may hold a batch of calls.
 */

/** Hermes/Qwen 2.5-style: calls as `<tool_call>\n{"name":…,"arguments":…}\n</tool_call>`, one after another. */
export const TOOL_CALL_TEMPLATE = `{%- if tools %}<|im_start|>system
# Tools
<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools><|im_end|>
{% endif %}{%- for message in messages %}{%- if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant
{% if message.content %}{{ message.content }}{% endif %}{%- for tool_call in message.tool_calls %}<tool_call>
{"name":"{{ tool_call.function.name }}","arguments":{{ tool_call.function.arguments | tojson }}}
</tool_call>{%- endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}`;

/** `gguf` (a GGUF v3 file as scriptedGguf writes it) with `tokenizer.chat_template` replaced by `template`. */
export function withChatTemplate(gguf: Buffer, template: string): Buffer {
  let at = 8; // magic, version
  const u64 = () => {
    const value = Number(gguf.readBigUInt64LE(at));
    at += 8;
    return value;
  };
  const u32 = () => {
    const value = gguf.readUInt32LE(at);
    at += 4;
    return value;
  };
  const string = () => {
    const length = u64();
    at += length;
    return gguf.toString('utf8', at - length, at);
  };
  const skip = (type: number): void => {
    if (type === STRING) string();
    else if (type === ARRAY) {
      const itemType = u32();
      for (let n = u64(); n > 0; n--) skip(itemType);
    } else at += SCALAR_SIZES[type]!;
  };
  const tensorCount = u64();
  const keyCount = u64();
  let alignment = 32;
  let value: [number, number] | undefined;
  for (let i = 0; i < keyCount; i++) {
    const key = string();
    const type = u32();
    const start = at;
    if (key === 'general.alignment') alignment = gguf.readUInt32LE(at);
    skip(type);
    if (key === 'tokenizer.chat_template') value = [start, at];
  }
  for (let i = 0; i < tensorCount; i++) {
    string(); // name
    const dimensions = u32();
    at += 8 * dimensions + 4 + 8; // dims, type, offset (relative to the data: unchanged)
  }
  if (!value) throw new Error('the GGUF has no tokenizer.chat_template');
  const text = Buffer.from(template, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(text.length));
  const header = Buffer.concat([gguf.subarray(0, value[0]), length, text, gguf.subarray(value[1], at)]);
  const padding = Buffer.alloc(Math.ceil(header.length / alignment) * alignment - header.length);
  return Buffer.concat([header, padding, gguf.subarray(Math.ceil(at / alignment) * alignment)]);
}

const STRING = 8;
const ARRAY = 9;
/** Bytes of each GGUF scalar type: u8, i8, u16, i16, u32, i32, f32, bool, (string), (array), u64, i64, f64. */
const SCALAR_SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
