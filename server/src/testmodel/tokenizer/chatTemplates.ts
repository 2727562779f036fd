/**
 * Chat templates (Jinja, rendered by `@huggingface/jinja` and Python's jinja2 alike).
 *
 * Message `content` is a string, null, or a list of parts `{type: 'image'}` /
 * `{type: 'text', text}`; each image part becomes `<image>\n` before the message text.
 */

/** Renders a message's content: one `<image>\n` per image part, then the text parts in order. */
const RENDER_CONTENT = `{%- macro render_content(content) -%}
{%- if content is string -%}
{{- content -}}
{%- elif content is iterable -%}
{%- for part in content -%}{%- if part['type'] == 'image' -%}{{- '<image>\\n' -}}{%- endif -%}{%- endfor -%}
{%- for part in content -%}{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
`;

export const VICUNA_SYSTEM =
  "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.";

/**
 * LLaVA-1.5 (vicuna_v1): `<s>` + system + ` USER: ` + images + text + ` ASSISTANT: ` + answer +
 * `</s>` ...; the generation prompt is ` ASSISTANT:`. A leading system message replaces the
 * default system text; every non-assistant role is rendered as USER (tool results go back as
 * user turns in LLaVA-Plus).
 */
export const VICUNA_TEMPLATE =
  RENDER_CONTENT +
  `{{- bos_token -}}
{%- if messages | length > 0 and messages[0]['role'] == 'system' -%}
{{- render_content(messages[0]['content']) -}}
{%- else -%}
{{- "${VICUNA_SYSTEM.replace(/"/g, '\\"')}" -}}
{%- endif -%}
{%- for message in messages -%}
{%- if message['role'] == 'assistant' -%}
{{- ' ASSISTANT: ' + render_content(message['content']) + '</s>' -}}
{%- elif message['role'] != 'system' -%}
{{- ' USER: ' + render_content(message['content']) -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- ' ASSISTANT:' -}}
{%- endif -%}`;

/**
 * ChatML (Qwen2 / OneVision): a default system turn unless the first message is a system
 * message, then `<|im_start|>{role}\n` + images + text + `<|im_end|>\n` for every message
 * (including `tool`), and `<|im_start|>assistant\n` as the generation prompt.
 */
export const CHATML_TEMPLATE =
  RENDER_CONTENT +
  `{%- if messages | length == 0 or messages[0]['role'] != 'system' -%}
{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}
{%- endif -%}
{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\\n' + render_content(message['content']) + '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\\n' -}}
{%- endif -%}`;
