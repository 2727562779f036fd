/**
 * A forgiving JSON reader for what language models write: JSON plus single-quoted strings,
 * unquoted keys, Python's True/False/None, trailing commas and `//` comments. It reads one value
 * from the start of the text and says where it ended, or why it failed and whether the text
 * simply stopped too early (a streamed answer cut off).
 */

export type LooseResult =
  | { ok: true; value: unknown; end: number }
  | { ok: false; error: string; incomplete: boolean; at: number };

class Fail extends Error {
  constructor(
    message: string,
    readonly at: number,
    readonly incomplete: boolean,
  ) {
    super(message);
  }
}

/** Reads one value starting at `from` (leading whitespace skipped). Never throws. */
export function parseLooseJson(text: string, from = 0): LooseResult {
  let i = from;
  const eof = () => i >= text.length;
  const cut = (what: string) => new Fail(`${what} is cut off`, i, true);

  const ws = () => {
    for (;;) {
      while (!eof() && /\s/.test(text[i])) i++;
      if (text.startsWith('//', i)) {
        while (!eof() && text[i] !== '\n') i++;
      } else if (text.startsWith('/*', i)) {
        const e = text.indexOf('*/', i + 2);
        if (e < 0) throw cut('a comment');
        i = e + 2;
      } else return;
    }
  };

  const str = (): string => {
    const q = text[i++];
    let out = '';
    for (;;) {
      if (eof()) throw cut('a string');
      const c = text[i++];
      if (c === q) return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      if (eof()) throw cut('a string');
      const e = text[i++];
      const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', '/': '/', '\\': '\\', '"': '"', "'": "'" };
      if (e in simple) out += simple[e];
      else if (e === 'u') {
        const hex = text.slice(i, i + 4);
        if (hex.length < 4) throw cut('a string');
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new Fail(`bad escape \\u${hex}`, i, false);
        out += String.fromCharCode(parseInt(hex, 16));
        i += 4;
      } else out += e;
    }
  };

  const value = (depth: number): unknown => {
    if (depth > 64) throw new Fail('nested too deeply', i, false);
    ws();
    if (eof()) throw cut('the value');
    const c = text[i];
    if (c === '{') return obj(depth);
    if (c === '[') return arr(depth);
    if (c === '"' || c === "'") return str();
    const num = /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 40));
    if (num) {
      i += num[0].length;
      return Number(num[0]);
    }
    const word = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i, i + 40));
    if (word) {
      const w = word[0];
      const lit: Record<string, unknown> = { true: true, false: false, null: null, True: true, False: false, None: null };
      if (w in lit) {
        i += w.length;
        return lit[w];
      }
      if (i + w.length >= text.length && ['true', 'false', 'null', 'True', 'False', 'None'].some((l) => l.startsWith(w))) throw cut('a literal');
      throw new Fail(`unexpected word ${JSON.stringify(w)}`, i, false);
    }
    if (c === '-' && i + 1 >= text.length) throw cut('a number');
    throw new Fail(`unexpected ${JSON.stringify(c)}`, i, false);
  };

  const key = (): string => {
    ws();
    if (eof()) throw cut('an object');
    const c = text[i];
    if (c === '"' || c === "'") return str();
    const m = /^[A-Za-z_$][A-Za-z0-9_$-]*/.exec(text.slice(i, i + 200));
    if (!m) throw new Fail(`expected a key, found ${JSON.stringify(c)}`, i, false);
    i += m[0].length;
    return m[0];
  };

  const obj = (depth: number): Record<string, unknown> => {
    i++; // {
    const out: Record<string, unknown> = {};
    for (;;) {
      ws();
      if (eof()) throw cut('an object');
      if (text[i] === '}') {
        i++;
        return out;
      }
      const k = key();
      ws();
      if (eof()) throw cut('an object');
      if (text[i] !== ':' && text[i] !== '=') throw new Fail(`expected ':' after key ${JSON.stringify(k)}`, i, false);
      i++;
      out[k] = value(depth + 1);
      ws();
      if (eof()) throw cut('an object');
      if (text[i] === ',') i++;
      else if (text[i] !== '}') throw new Fail(`expected ',' or '}' in an object, found ${JSON.stringify(text[i])}`, i, false);
    }
  };

  const arr = (depth: number): unknown[] => {
    i++; // [
    const out: unknown[] = [];
    for (;;) {
      ws();
      if (eof()) throw cut('a list');
      if (text[i] === ']') {
        i++;
        return out;
      }
      out.push(value(depth + 1));
      ws();
      if (eof()) throw cut('a list');
      if (text[i] === ',') i++;
      else if (text[i] !== ']') throw new Fail(`expected ',' or ']' in a list, found ${JSON.stringify(text[i])}`, i, false);
    }
  };

  try {
    const v = value(0);
    return { ok: true, value: v, end: i };
  } catch (e) {
    if (e instanceof Fail) return { ok: false, error: e.message, incomplete: e.incomplete, at: e.at };
    return { ok: false, error: String(e), incomplete: false, at: i };
  }
}
