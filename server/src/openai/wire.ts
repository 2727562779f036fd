/**
 * The OpenAI chat-completions wire format, as far as LLaVA Lens speaks it on both sides (the
 * daemon's `/v1/chat/completions` endpoint and the HTTP backend `OpenAiEngine`): request and
 * answer shapes, streamed chunks, and errors (`{error: {message, type, code}}` with an HTTP
 * status, mapped from `LensErrorCode`s here, once).
 */
import { LensError, LensErrorCode } from '../../../common/errors';

export type ContentPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string; detail?: string } };

export interface WireToolCall {
  id: string;
  type: 'function';
  function: { name: string; /** JSON text */ arguments: string };
}

export interface WireMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content?: string | ContentPart[] | null;
  name?: string;
  tool_calls?: WireToolCall[];
  tool_call_id?: string;
}

export interface WireTool {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown> };
}

export type WireToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };

export interface ChatRequest {
  model?: string;
  messages: WireMessage[];
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  /** Not OpenAI's; vLLM, SGLang, llama.cpp and this daemon take it. */
  top_k?: number;
  /** Not OpenAI's; vLLM, SGLang and this daemon take it. */
  repetition_penalty?: number;
  seed?: number;
  stop?: string | string[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  tools?: WireTool[];
  tool_choice?: WireToolChoice;
  parallel_tool_calls?: boolean;
  n?: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens: number };
}

export type WireFinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter';

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string | null; tool_calls?: WireToolCall[] };
    finish_reason: WireFinishReason;
    logprobs: null;
  }>;
  usage: Usage;
}

export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

export interface ChatChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: 'assistant'; content?: string | null; tool_calls?: ToolCallDelta[] };
    finish_reason: WireFinishReason | null;
    logprobs?: null;
  }>;
  usage?: Usage | null;
}

export interface WireModelList {
  object: 'list';
  data: Array<{ id: string; object: 'model'; created: number; owned_by: string; max_model_len?: number }>;
}

export interface ErrorBody {
  error: { message: string; type: string; code: string | null; param?: string | null };
}

/** An HTTP refusal of the endpoint: its status and OpenAI-shaped body. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly code: string | null = null,
    /** Seconds, for 429/503. */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = 'HttpError';
  }

  body(): ErrorBody {
    return { error: { message: this.message, type: this.type, code: this.code } };
  }
}

/** HTTP status, type and code for each product error the engine or the daemon may throw. */
const STATUS: Partial<Record<LensErrorCode, [number, string, string]>> = {
  [LensErrorCode.ModelNotLoaded]: [503, 'server_error', 'model_not_loaded'],
  [LensErrorCode.InvalidModelFolder]: [500, 'server_error', 'model_load_failed'],
  [LensErrorCode.ModelLoadFailed]: [500, 'server_error', 'model_load_failed'],
  [LensErrorCode.DeviceUnavailable]: [500, 'server_error', 'model_load_failed'],
  [LensErrorCode.ImageDecodeFailed]: [400, 'invalid_request_error', 'invalid_image'],
  [LensErrorCode.UnsupportedImage]: [400, 'invalid_request_error', 'invalid_image_format'],
  [LensErrorCode.ImageTooLarge]: [413, 'invalid_request_error', 'image_too_large'],
  [LensErrorCode.ImageNotFound]: [400, 'invalid_request_error', 'invalid_image'],
  [LensErrorCode.PathNotAllowed]: [400, 'invalid_request_error', 'invalid_image'],
  [LensErrorCode.PromptTooLong]: [400, 'invalid_request_error', 'context_length_exceeded'],
  [LensErrorCode.InvalidParams]: [400, 'invalid_request_error', 'invalid_value'],
  [LensErrorCode.UnknownConversation]: [404, 'invalid_request_error', 'not_found'],
  [LensErrorCode.Busy]: [503, 'server_error', 'server_busy'],
  [LensErrorCode.LimitExceeded]: [400, 'invalid_request_error', 'limit_exceeded'],
  [LensErrorCode.RateLimited]: [429, 'rate_limit_error', 'rate_limit_exceeded'],
  [LensErrorCode.Unauthorized]: [401, 'authentication_error', 'invalid_api_key'],
  [LensErrorCode.BackendFailed]: [502, 'server_error', 'backend_failed'],
};

/** The HTTP answer for anything a request's handling threw (a non-Lens error is a 500). */
export function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof LensError) {
    const [status, type, code] = STATUS[e.code] ?? [500, 'server_error', 'internal_error'];
    return new HttpError(status, e.message, type, code, e.code === LensErrorCode.Busy || e.code === LensErrorCode.RateLimited ? 5 : undefined);
  }
  const message = e instanceof Error ? e.message : String(e);
  return new HttpError(500, `the daemon failed unexpectedly (${message}); it keeps serving: retry, and report it with the daemon log if it persists.`, 'server_error', 'internal_error');
}

/** OpenAI's finish reason for a LLaVA Lens one (`cancelled` never reaches a client: it left). */
export function wireFinishReason(r: string): WireFinishReason {
  return r === 'length' ? 'length' : 'stop';
}
