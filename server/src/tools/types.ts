/**
 * Contracts of the tool registry (LLaVA-Plus-style tools the agent loop and `lens/runTool` call).
 *
 * Coordinates: every box that crosses this boundary is `[x0, y0, x1, y1]` normalised to the raw
 * image (after EXIF orientation): 0..1, x to the right, y down, x0 <= x1, y0 <= y1.
 */

/** `[x0, y0, x1, y1]`, normalised to the raw image (0..1). */
export type NormBox = [number, number, number, number];

/** The image a tool works on. */
export interface ToolImage {
  /** The image file as received (PNG, JPEG, …). `image_info` reads its header; the others decode it once (see `pixels.ts`). */
  bytes: Uint8Array;
  /** Pixels, after EXIF orientation. */
  width: number;
  height: number;
  /**
   * Optional: the decoded pixels, [Hpx, Wpx, 3] RGB u8 HWC exactly as `decodeImage` returns them
   * (sRGB, alpha on white, EXIF applied). Pass them when already decoded to save a decode; never
   * modified by a tool.
   */
  pixels?: Uint8Array;
}

/** A derived view of the image that a tool hands over to the agent loop: `zoom`'s crop, `grid`'s overlay (see `ToolContext.encodeCrop`). */
export interface CropImage {
  /** PNG bytes, already at the vision encoder's input resolution. Owned by the receiver. */
  png: Uint8Array;
  /** Pixels of the PNG. */
  width: number;
  height: number;
  /** Which part of the raw image it shows. */
  box: NormBox;
}

/** What the loop answers to `encodeCrop`: how the observation may refer to the crop. */
export interface CropHandle {
  /** 1-based position of the image in the conversation, e.g. 2 for the first crop after the original. */
  imageNumber: number;
}

export interface ToolContext {
  image: ToolImage;
  /** Aborted on cancellation or when the tool's time limit passes; long tools check it between stages. */
  signal: AbortSignal;
  /** The vision encoder's input side in pixels (336 for LLaVA-1.5, 384 for SigLIP). `zoom` scales its crop so the longer side equals it. Default 336. */
  encoderSize?: number;
  /**
   * Present inside the agent loop: hands a derived image (a zoomed crop, the grid overlay) to the
   * loop, which attaches it as an extra image to the next model turn (the observation), after the
   * original when that is repeated. The model then sees the region at full encoder resolution.
   * Resolves once the loop has queued it, with the image's number in the conversation so the
   * observation can say "attached as image 3". The loop owns `png` from then on. Absent for a
   * direct `lens/runTool`: the image is then only returned as an artefact for display.
   * Adapting the engine: each `TurnImage` is an `ImageInput` `{ bytes, mimeType }`.
   */
  encodeCrop?: (crop: CropImage) => Promise<CropHandle>;
}

/** What a tool gives a client to draw (boxes) or show (images); the protocol's type. */
export type { Artefact } from '../runtime/types';
import type { Artefact } from '../runtime/types';
export type BoxesArtefact = Extract<Artefact, { kind: 'boxes' }>;
export type ImageArtefact = Extract<Artefact, { kind: 'image' }>;

export interface ToolResult {
  /**
   * The observation the model sees: compact JSON text, numbers rounded to 2 decimals, no bulky
   * fields (images, long arrays cut). On failure: `{"error": "..."}`.
   */
  summary: string;
  /** The full structured result for the client (`lens/runTool`), or `{ error }` on failure. */
  data: unknown;
  artefacts?: Artefact[];
  /** Present on failure (the same text as in `summary`). */
  error?: string;
}

/** JSON Schema (draft 2020-12 subset) describing a tool's arguments. */
export type JsonSchema = Record<string, unknown>;

/** `parseArgs` outcome: the typed arguments, or a message saying what is wrong with them. */
export type ParsedArgs<A> = { ok: true; args: A } | { ok: false; error: string };

/**
 * One tool. `run` may throw or reject: `runTool` turns that into an error result. It must stop
 * soon after `ctx.signal` aborts (the result is then discarded). Tools may run concurrently with
 * each other; none keeps per-call state.
 */
export interface Tool<A = unknown> {
  /** `snake_case`, as the model writes it. */
  name: string;
  /** One or two sentences for the model and the user. */
  description: string;
  /** JSON schema of the arguments object. */
  schema: JsonSchema;
  /** Checks untrusted arguments (from the model or a client). `undefined`/`null` mean `{}`. Never throws. */
  parseArgs(raw: unknown): ParsedArgs<A>;
  /** Default time limit, ms (the caller's limit wins when given). */
  timeoutMs?: number;
  run(args: A, ctx: ToolContext): Promise<ToolResult>;
}

/** A tool of any argument type (what the registry stores). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyTool = Tool<any>;
