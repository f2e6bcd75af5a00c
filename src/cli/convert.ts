import { convertModel } from '../formats/convert.js';
import { GraftError } from '../util/errors.js';
import { num } from './parse.js';

export function numberList(v: string | undefined, flag: string): number[] | undefined {
  if (v == null) return undefined;
  const parts = v.split(',').map((s) => s.trim());
  if (!parts.length || parts.some((s) => s === ''))
    throw new GraftError(`${flag} must be a comma-separated list of numbers, got '${v}'`);
  return parts.map((s) => num(s, flag));
}

export function size(v: string | undefined): { width?: number; height?: number } {
  if (v == null) return {};
  const m = /^(\d+)[x×,](\d+)$/i.exec(v.trim()) ?? /^(\d+)$/.exec(v.trim());
  if (!m) throw new GraftError(`--size must be WxH (e.g. 224x224), got '${v}'`);
  const width = Number(m[1]),
    height = Number(m[2] ?? m[1]);
  if (!(width > 0 && height > 0)) throw new GraftError(`--size must be positive, got '${v}'`);
  return { width, height };
}

export async function convertCommand(
  input: string,
  output: string,
  o: {
    labels?: string;
    mean?: string;
    std?: string;
    size?: string;
    channelOrder?: 'RGB' | 'BGR';
    resize?: 'stretch' | 'center-crop';
    json?: boolean;
  },
) {
  const r = await convertModel(input, output, {
    labels: o.labels,
    mean: numberList(o.mean, '--mean'),
    std: numberList(o.std, '--std'),
    ...size(o.size),
    channelOrder: o.channelOrder,
    resize: o.resize,
  });
  if (o.json) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    return;
  }
  const shape = (s: unknown[] | undefined) => `[${(s ?? []).map((d) => d ?? '?').join(', ')}]`;
  process.stdout.write(
    `${r.output}: ${r.nodes} nodes (${Object.entries(r.ops)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}), ${r.parameters.toLocaleString('en')} parameters, ${(r.bytes / 1e6).toFixed(1)} MB\n`,
  );
  for (const v of r.inputs) process.stdout.write(`  input  ${v.name} ${v.dtype ?? ''} ${shape(v.shape)}\n`);
  for (const v of r.outputs) process.stdout.write(`  output ${v.name} ${v.dtype ?? ''} ${shape(v.shape)}\n`);
  const p = r.preprocess;
  if (p) {
    const f = (a: number[]) => a.map((x) => +x.toFixed(4)).join(',');
    process.stdout.write(
      `  preprocess (${p.source}): ${p.width}x${p.height} ${p.channelOrder}, ${p.resize}, value = (pixel/255 - [${f(p.mean)}]) / [${f(p.std)}]\n`,
    );
  }
  if (r.labels) process.stdout.write(`  labels: ${r.labels}\n`);
}
