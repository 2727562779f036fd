/**
 * The tool registry: what `lens/listTools` lists, what `lens/runTool` and the agent loop run.
 *
 * `runTool` is the one way to run a tool: it checks the arguments, gives the tool a time limit
 * and a cancellable signal, and turns every failure (unknown tool, bad arguments, a throw, a
 * timeout, a cancellation) into an error `ToolResult` — it never throws.
 */
import type { AnyTool, JsonSchema, ToolContext, ToolResult } from './types';

/** Default time limit of one tool call, ms. */
export const DEFAULT_TOOL_TIMEOUT_MS = 30_000;

/** What `lens/listTools` returns per tool. */
export interface ToolDescription {
  name: string;
  description: string;
  schema: JsonSchema;
}

/** A `ToolResult` plus how long the call took. */
export interface ToolRun extends ToolResult {
  /** Wall time, ms. */
  ms: number;
  /** How the call ended. */
  status: 'ok' | 'error' | 'timeout' | 'cancelled';
}

export class ToolRegistry {
  private readonly tools = new Map<string, AnyTool>();

  constructor(tools: AnyTool[] = []) {
    for (const t of tools) this.register(t);
  }

  /** Adds a tool. Throws on a duplicate or malformed name (a programming error, at startup). */
  register(tool: AnyTool): this {
    if (!/^[a-z][a-z0-9_]*$/.test(tool.name)) throw new Error(`tool name ${JSON.stringify(tool.name)} must be snake_case`);
    if (this.tools.has(tool.name)) throw new Error(`tool ${tool.name} is registered twice`);
    this.tools.set(tool.name, tool);
    return this;
  }

  get(name: string): AnyTool | undefined {
    return this.tools.get(name);
  }

  names(): string[] {
    return [...this.tools.keys()];
  }

  /** Name, description and argument schema of every tool, in registration order. */
  describe(): ToolDescription[] {
    return [...this.tools.values()].map((t) => ({ name: t.name, description: t.description, schema: t.schema }));
  }

  /**
   * Runs one tool. The tool sees `ctx` with a signal that aborts when `ctx.signal` aborts or when
   * `timeoutMs` (else the tool's own `timeoutMs`, else `DEFAULT_TOOL_TIMEOUT_MS`) passes; the call
   * resolves as soon as either happens, even if the tool ignores its signal. Never rejects.
   */
  async runTool(name: string, rawArgs: unknown, ctx: ToolContext, timeoutMs?: number): Promise<ToolRun> {
    const started = Date.now();
    const fail = (status: ToolRun['status'], error: string): ToolRun => ({ ...errorResult(error), ms: Date.now() - started, status });

    const tool = this.tools.get(name);
    if (!tool) return fail('error', `unknown tool ${JSON.stringify(name)}; available tools: ${this.names().join(', ') || '(none)'}`);
    let parsed;
    try {
      parsed = tool.parseArgs(rawArgs);
    } catch (e) {
      parsed = { ok: false as const, error: messageOf(e) };
    }
    if (!parsed.ok) return fail('error', `invalid arguments for ${name}: ${parsed.error}`);
    if (timeoutMs !== undefined && !(timeoutMs > 0)) return fail('error', `the time limit for ${name} must be a positive number of milliseconds, got ${timeoutMs}`);
    if (ctx.signal.aborted) return fail('cancelled', `${name} was cancelled before it started`);

    const limit = timeoutMs ?? tool.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const stopped = new Promise<ToolRun>((resolve) => {
      onAbort = () => {
        ac.abort(ctx.signal.reason);
        resolve(fail('cancelled', `${name} was cancelled`));
      };
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      timer = setTimeout(() => {
        ac.abort(new Error(`${name} timed out`));
        resolve(fail('timeout', `${name} timed out after ${limit} ms`));
      }, limit);
    });
    const ran = (async (): Promise<ToolRun> => {
      try {
        const r = await tool.run(parsed.args, { ...ctx, signal: ac.signal });
        if (ac.signal.aborted) return fail('cancelled', `${name} was cancelled`); // lost the race; `stopped` has answered
        return { ...r, ms: Date.now() - started, status: r.error ? 'error' : 'ok' };
      } catch (e) {
        return fail('error', `${name} failed: ${messageOf(e)}`);
      }
    })();
    try {
      return await Promise.race([ran, stopped]);
    } finally {
      clearTimeout(timer);
      if (onAbort) ctx.signal.removeEventListener('abort', onAbort);
      if (!ac.signal.aborted) ac.abort(new Error(`${name} finished`)); // lets a tool release anything tied to its signal
    }
  }
}

/** The error result every failure becomes: the model sees `{"error": "..."}`. */
export function errorResult(error: string): ToolResult {
  return { summary: JSON.stringify({ error }), data: { error }, error };
}

function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}
