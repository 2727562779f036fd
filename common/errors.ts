/**
 * Product error codes for the LLaVA Lens protocol.
 *
 * JSON-RPC reserves -32768..-32000 (and LSP -32899..-32800); our codes are positive integers in
 * 1000..1999 so a client can tell "the daemon refused this for a product reason" from a transport
 * error. Every message carries what went wrong *and* what to do about it.
 */
export enum LensErrorCode {
  /** `lens/ask` or a model-dependent call before `lens/loadModel` succeeded. */
  ModelNotLoaded = 1001,
  /** The model folder is missing, incomplete or inconsistent (message names the file). */
  InvalidModelFolder = 1002,
  /** onnxruntime refused to create a session (message carries its reason). */
  ModelLoadFailed = 1003,
  /** The requested execution provider is not available in this onnxruntime build. */
  DeviceUnavailable = 1004,
  /** Image bytes could not be decoded (corrupt, truncated, empty). */
  ImageDecodeFailed = 1010,
  /** Image format not supported by the decoder. */
  UnsupportedImage = 1011,
  /** Image over the configured pixel limit. */
  ImageTooLarge = 1012,
  /** Image path could not be read. */
  ImageNotFound = 1013,
  /** A path outside what this client may read (workspace folders, model roots), or any path from a remote client. */
  PathNotAllowed = 1014,
  /** Rendered prompt (with image tokens) does not fit the model's context. */
  PromptTooLong = 1020,
  /** Parameters have the wrong shape or values. */
  InvalidParams = 1030,
  /** Unknown conversation id. */
  UnknownConversation = 1031,
  /** The daemon's queue is full. */
  Busy = 1040,
  /** The request was cancelled before it produced anything to return (e.g. a model load). */
  Cancelled = 1041,
  /** A configured per-client limit (new tokens per ask) would be exceeded. */
  LimitExceeded = 1042,
  /** The client sent more requests per minute than the daemon allows. */
  RateLimited = 1043,
  /** The connection is not authorised (shared daemon: token, origin). */
  Unauthorized = 1044,
  /**
   * The generation backend (an OpenAI-compatible server, `serve --backend openai`) refused the
   * request, failed, or could not be reached; the message names the URL, the HTTP status and
   * the server's words. `data`: `{ url, status? }`.
   */
  BackendFailed = 1050,
  /** Model download: the repository (or revision) does not exist, or is private and the token gives no access. */
  RepoNotFound = 1060,
  /** Model download: the Hub refused access (gated or private repository, token without access: 401/403). */
  AccessDenied = 1061,
  /** Model download: the network, the server (5xx, 429) or the disk failed, after retries. */
  DownloadFailed = 1062,
  /** Model download: a file's size or SHA-256 does not match the Hub's metadata. */
  DownloadCorrupt = 1063,
  /** Anything unexpected; the daemon keeps serving. */
  Internal = 1099,
}

/** A typed error that crosses the daemon boundary as a JSON-RPC `ResponseError`. */
export class LensError extends Error {
  constructor(
    readonly code: LensErrorCode,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'LensError';
  }
}

export function isLensError(e: unknown): e is LensError {
  return e instanceof LensError;
}
