/**
 * TF.js models shipped as JavaScript bundles, the way the npm package `nsfwjs` ships them: a folder with
 * `model.min.js` (a browserify/UMD module whose single export is the model.json object, as a minified
 * object literal) and one `<shard>.min.js` per weight shard (its export is the shard's bytes as a base64
 * string). Nothing here runs the bundles: the export is found and parsed as a literal.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { GraftError } from '../util/errors.js';

/** The models of nsfwjs, by its own names, with their folder under dist/models and input size (MobileNetV2Mid is a graph model). */
export const NSFWJS_MODELS = {
  MobileNetV2: { dir: 'mobilenet_v2', size: 224 },
  MobileNetV2Mid: { dir: 'mobilenet_v2_mid', size: 224 },
  InceptionV3: { dir: 'inception_v3', size: 299 },
} as const;
export type NsfwjsModel = keyof typeof NSFWJS_MODELS;

/** nsfwjs's five classes, in output order (its dist/esm/nsfw_classes.js). */
export const NSFWJS_LABELS = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy'];

/**
 * The installed nsfwjs package folder, found through Node's module resolution from `from` (a file path,
 * or a folder path ending in '/'), else from the working directory, else from Graft's own location.
 */
export function nsfwjsPackageDir(from?: string): string {
  let entry: string | undefined;
  const bases = [
    from && (from.endsWith('/') ? join(from, 'x.js') : from),
    join(process.cwd(), 'x.js'),
    import.meta.url,
  ].filter(Boolean) as string[];
  for (const base of bases) {
    try {
      entry = createRequire(base).resolve('nsfwjs');
      break;
    } catch {
      /* next */
    }
  }
  if (!entry)
    throw new GraftError(`the npm package 'nsfwjs' is not installed`, 'install it with: npm install -D nsfwjs');
  for (let d = dirname(entry); d !== dirname(d); d = dirname(d)) {
    const pj = join(d, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'nsfwjs') return d;
      } catch {
        /* a nested package.json without a name: keep going up */
      }
    }
  }
  throw new GraftError(`found nsfwjs at ${entry} but not its package folder`);
}

/** The folder holding model.min.js and the shard bundles of one nsfwjs layers model. */
export function nsfwjsModelDir(model: NsfwjsModel, from?: string): string {
  const spec = NSFWJS_MODELS[model];
  if (!spec) throw new GraftError(`unknown nsfwjs model '${model}' (models: ${Object.keys(NSFWJS_MODELS).join(', ')})`);
  const dir = join(nsfwjsPackageDir(from), 'dist', 'models', spec.dir);
  if (!existsSync(join(dir, 'model.min.js')))
    throw new GraftError(`${dir} has no model.min.js: is this nsfwjs version laid out differently?`);
  return dir;
}

/** Labels from the installed package's nsfw_classes.js, falling back to the known five. */
export function nsfwjsLabels(from?: string): string[] {
  try {
    const src = readFileSync(join(nsfwjsPackageDir(from), 'dist', 'esm', 'nsfw_classes.js'), 'utf8');
    const pairs = [...src.matchAll(/(\d+)\s*:\s*['"]([^'"]+)['"]/g)].map((m) => [Number(m[1]), m[2]!] as const);
    if (pairs.length) {
      const out: string[] = [];
      for (const [i, l] of pairs) out[i] = l;
      if (out.every((x) => typeof x === 'string')) return out;
    }
  } catch {
    /* fall through */
  }
  return [...NSFWJS_LABELS];
}

/** Where the bundle's export starts: the text after `<id>.exports=`. */
function exportStart(src: string, file: string): number {
  const m = /\b[A-Za-z_$][\w$]*\.exports\s*=\s*(?=[{"'])/.exec(src);
  if (!m) throw new GraftError(`${file}: not a TF.js model bundle (no 'module.exports = …' of a literal found)`);
  return m.index + m[0].length;
}

/** The model.json object exported by a model bundle such as nsfwjs's model.min.js. */
export function readModelBundle(file: string): unknown {
  if (!existsSync(file)) throw new GraftError(`model bundle not found: ${file}`);
  const src = readFileSync(file, 'utf8');
  const p = new LiteralParser(src, exportStart(src, file), file);
  const v = p.value();
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new GraftError(`${file}: the bundle exports no model object`);
  return v;
}

/** The bytes of a weight shard bundle such as nsfwjs's group1-shard1of1.min.js (a base64 string export). */
export function readShardBundle(file: string): Uint8Array {
  if (!existsSync(file)) throw new GraftError(`weight shard not found: ${file}`);
  const src = readFileSync(file, 'utf8');
  const p = new LiteralParser(src, exportStart(src, file), file);
  const v = p.value();
  if (typeof v !== 'string') throw new GraftError(`${file}: the bundle does not export a base64 string`);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0)
    throw new GraftError(`${file}: the exported string is not valid base64 (truncated?)`);
  const b = Buffer.from(v, 'base64');
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * A parser for the literal subset minifiers emit for JSON data: objects (bare or quoted keys), arrays,
 * strings, numbers (`.5`, `1e-3`, hex), true/false/null, `!0`/`!1`, `void 0`. Anything else is an error.
 */
class LiteralParser {
  constructor(
    private s: string,
    private i: number,
    private file: string,
  ) {}

  private fail(what: string): never {
    const ctx = this.s.slice(Math.max(0, this.i - 30), this.i + 30).replace(/\s+/g, ' ');
    throw new GraftError(
      `${this.file}: cannot parse the exported literal at offset ${this.i}: ${what} (near '${ctx}')`,
    );
  }

  private ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 32 || c === 9 || c === 10 || c === 13) this.i++;
      else break;
    }
  }

  /** Nesting depth: a hostile bundle of a million '[' must be an error, not a stack overflow. */
  private depth = 0;

  value(): unknown {
    if (this.depth > 256) this.fail('nesting deeper than 256 levels');
    this.ws();
    const s = this.s;
    if (this.i >= s.length) this.fail('unexpected end of file (truncated?)');
    const c = s[this.i]!;
    if (c === '{' || c === '[') {
      this.depth++;
      try {
        return c === '{' ? this.object() : this.array();
      } finally {
        this.depth--;
      }
    }
    if (c === '"' || c === "'") return this.string();
    if (c === '!') {
      const t = s.slice(this.i, this.i + 2);
      if (t === '!0' || t === '!1') {
        this.i += 2;
        return t === '!0';
      }
      this.fail(`unsupported expression '${t}'`);
    }
    if (c === '-' || c === '+' || c === '.' || (c >= '0' && c <= '9')) return this.number();
    const w = /^[A-Za-z_$][\w$]*/.exec(s.slice(this.i, this.i + 20))?.[0];
    if (w === 'true' || w === 'false' || w === 'null') {
      this.i += w.length;
      return w === 'true' ? true : w === 'false' ? false : null;
    }
    if (w === 'void') {
      this.i += 4;
      this.ws();
      if (s[this.i] !== '0') this.fail('unsupported void expression');
      this.i++;
      return null;
    }
    if (w === 'Infinity' || w === 'NaN') {
      this.i += w.length;
      return w === 'NaN' ? NaN : Infinity;
    }
    return this.fail(`unexpected '${c}'`);
  }

  private object(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    this.i++;
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      const c = this.s[this.i];
      let key: string;
      if (c === '"' || c === "'") key = this.string();
      else if (c !== undefined && c >= '0' && c <= '9') key = String(this.number());
      else {
        const m = /^[A-Za-z_$][\w$]*/.exec(this.s.slice(this.i, this.i + 256));
        if (!m) this.fail('expected a property name');
        key = m[0];
        this.i += key.length;
      }
      this.ws();
      if (this.s[this.i] !== ':') this.fail("expected ':'");
      this.i++;
      const v = this.value();
      if (key === '__proto__')
        Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
      else out[key] = v;
      this.ws();
      const d = this.s[this.i];
      if (d === ',') {
        this.i++;
        this.ws();
        if (this.s[this.i] === '}') {
          this.i++;
          return out;
        }
        continue;
      }
      if (d === '}') {
        this.i++;
        return out;
      }
      this.fail(d === undefined ? 'unexpected end of file (truncated?)' : "expected ',' or '}'");
    }
  }

  private array(): unknown[] {
    const out: unknown[] = [];
    this.i++;
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value());
      this.ws();
      const d = this.s[this.i];
      if (d === ',') {
        this.i++;
        this.ws();
        if (this.s[this.i] === ']') {
          this.i++;
          return out;
        }
        continue;
      }
      if (d === ']') {
        this.i++;
        return out;
      }
      this.fail(d === undefined ? 'unexpected end of file (truncated?)' : "expected ',' or ']'");
    }
  }

  private string(): string {
    const s = this.s;
    const q = s[this.i]!;
    const start = ++this.i;
    // fast path: no escapes
    const end = s.indexOf(q, start);
    if (end < 0) this.fail('unterminated string (truncated?)');
    const raw = s.slice(start, end);
    if (!raw.includes('\\') && !raw.includes('\n')) {
      this.i = end + 1;
      return raw;
    }
    let out = '';
    for (;;) {
      if (this.i >= s.length) this.fail('unterminated string (truncated?)');
      const c = s[this.i++]!;
      if (c === q) return out;
      if (c === '\n') this.fail('newline in string');
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = s[this.i++];
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '0':
          out += '\0';
          break;
        case 'x':
          out += String.fromCharCode(parseInt(s.slice(this.i, this.i + 2), 16));
          this.i += 2;
          break;
        case 'u':
          if (s[this.i] === '{') {
            const close = s.indexOf('}', this.i);
            out += String.fromCodePoint(parseInt(s.slice(this.i + 1, close), 16));
            this.i = close + 1;
          } else {
            out += String.fromCharCode(parseInt(s.slice(this.i, this.i + 4), 16));
            this.i += 4;
          }
          break;
        case '\n':
          break;
        case undefined:
          return this.fail('unterminated string (truncated?)');
        default:
          out += e;
      }
    }
  }

  private number(): number {
    const m = /^[+-]?(0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)/.exec(this.s.slice(this.i, this.i + 64));
    if (!m) this.fail('bad number');
    this.i += m[0].length;
    const t = m[0];
    const neg = t.startsWith('-');
    const body = t.replace(/^[+-]/, '');
    const v = /^0[xX]/.test(body) ? parseInt(body, 16) : Number(body);
    return neg ? -v : v;
  }
}
