/** Shared by Studio's tests: real Fashion-MNIST images as PNG files, and multipart bodies for inject. */
import { join } from 'node:path';
import sharp from 'sharp';
import { loadLabelledImages } from '../../src/data/labelled-images.js';
import { decodeBmp } from '../../src/data/image.js';
import { asset } from '../helpers/assets.js';

/** Fashion-MNIST test images of some classes as PNG bytes: { class name → PNGs }. */
export async function fashionPngs(
  classes: Record<number, string>,
  perClass: number,
): Promise<Record<string, Buffer[]>> {
  const data = loadLabelledImages(join(asset('datasets/fashion-mnist'), 't10k-images-idx3-ubyte.gz'));
  const out: Record<string, Buffer[]> = {};
  for (let i = 0; i < data.inputs.length; i++) {
    const name = classes[data.labels[i]!];
    if (name === undefined) continue;
    const list = (out[name] ??= []);
    if (list.length >= perClass) continue;
    const bmp = decodeBmp(data.inputs[i] as Uint8Array)!;
    list.push(
      await sharp(bmp.data, { raw: { width: bmp.width, height: bmp.height, channels: 3 } })
        .greyscale()
        .png()
        .toBuffer(),
    );
  }
  return out;
}

/** A multipart/form-data body of files (and fields). */
export function multipartBody(
  files: { name: string; bytes: Uint8Array; type?: string; field?: string }[],
  fields: Record<string, string> = {},
): { payload: Buffer; headers: Record<string, string> } {
  const boundary = `----graftstudio${Math.random().toString(16).slice(2)}`;
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields))
    parts.push(Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  for (const f of files) {
    parts.push(
      Buffer.from(
        `--${boundary}\r\ncontent-disposition: form-data; name="${f.field ?? 'files'}"; filename="${f.name}"\r\ncontent-type: ${f.type ?? 'application/octet-stream'}\r\n\r\n`,
      ),
    );
    parts.push(Buffer.from(f.bytes), Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(parts), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}
