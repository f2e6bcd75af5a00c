/**
 * The file patterns of `graft pull --include`, matched as huggingface_hub's allow_patterns are
 * (Python's fnmatch): `*` matches any run of characters including '/', `?` one character, `[abc]` and
 * `[!abc]` a set; a pattern ending in '/' means everything under that folder. So `*.json` picks
 * every JSON file, `onnx/*` the onnx folder, `onnx/model.onnx` exactly one file.
 * Also the file set a command needs from a model repository when no pattern is given.
 */

/**
 * What a command downloads from a model repository by default: configuration and tokenizer files and
 * the full-precision ONNX model (with its external data), never the quantized or fp16 variants.
 */
export const MODEL_FILES: readonly string[] = [
  '*.json',
  '*.txt',
  'onnx/model.onnx',
  'onnx/model.onnx_data',
  'model.onnx',
  'model.onnx_data',
];

/** The files among MODEL_FILES that are a loadable model (one of them must be present). */
export const MODEL_WEIGHTS: readonly string[] = ['onnx/model.onnx', 'model.onnx'];

function toRegExp(pattern: string): RegExp {
  let p = pattern.endsWith('/') ? `${pattern}*` : pattern;
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = p.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        let set = p.slice(i + 1, end);
        if (set.startsWith('!')) set = `^${set.slice(1)}`;
        re += `[${set.replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  p = re;
  return new RegExp(`^${p}$`, 's');
}

/** Whether `path` matches any of the patterns. */
export function matchesAny(path: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => toRegExp(p).test(path));
}
