/**
 * "Run in the browser": the exported ONNX classifier run in the page with onnxruntime-web (WASM),
 * prepared as the model's own recorded preprocessing says (`graft.preprocess` and `graft.labels` in
 * the ONNX file's metadata, read here from the file's bytes). The image is fitted to the model's
 * input size on a canvas (stretch, or centre crop), and the same fitted pixels are what the page
 * also sends to the server, so the two answers are for one input and can be compared.
 */
import type * as Ort from 'onnxruntime-web';

export interface Preprocess {
  width: number;
  height: number;
  channels: 1 | 3;
  channelOrder: 'RGB' | 'BGR' | 'GRAY';
  mean: number[];
  std: number[];
  resize: 'stretch' | 'center-crop';
}

export interface InPageModel {
  labels: string[];
  preprocess: Preprocess;
  inputName: string;
  outputName: string;
  /** Probabilities of one fitted image (H × W RGBA pixels from a canvas at the model's size). */
  run(pixels: ImageData): Promise<Record<string, number>>;
}

let ortModule: Promise<typeof Ort> | undefined;

/** onnxruntime-web, loaded on first use; its WASM binary is served beside the app (ort/). */
function loadOrt(): Promise<typeof Ort> {
  ortModule ??= import('onnxruntime-web/wasm').then((ort) => {
    ort.env.wasm.wasmPaths = new URL('ort/', location.href).href;
    ort.env.wasm.numThreads = 1; // no cross-origin isolation, so no shared memory for threads
    ort.env.wasm.proxy = false;
    return ort;
  });
  return ortModule;
}

/** ModelProto.metadata_props (field 14: key 1, value 2) from an ONNX file's bytes, without a protobuf library. */
export function onnxMetadata(bytes: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  let p = 0;
  const varint = (end: number): number => {
    let v = 0,
      mul = 1;
    while (p < end) {
      const b = bytes[p++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
    }
    throw new Error('truncated ONNX file');
  };
  const dec = new TextDecoder();
  while (p < bytes.length) {
    const tag = varint(bytes.length),
      field = Math.floor(tag / 8),
      wire = tag & 7;
    if (wire === 0) varint(bytes.length);
    else if (wire === 1) p += 8;
    else if (wire === 5) p += 4;
    else if (wire === 2) {
      const len = varint(bytes.length),
        end = p + len;
      if (end > bytes.length) throw new Error('truncated ONNX file');
      if (field === 14) {
        let key = '',
          value = '';
        while (p < end) {
          const t = varint(end),
            f = Math.floor(t / 8);
          if ((t & 7) !== 2) throw new Error('unexpected metadata entry in the ONNX file');
          const l = varint(end),
            s = dec.decode(bytes.subarray(p, p + l));
          p += l;
          if (f === 1) key = s;
          else if (f === 2) value = s;
        }
        out[key] = value;
      }
      p = end;
    } else throw new Error(`unexpected protobuf wire type ${wire} in the ONNX file`);
  }
  return out;
}

/** Load an exported classifier's bytes into onnxruntime-web. */
export async function loadInPageModel(bytes: ArrayBuffer): Promise<InPageModel> {
  const u8 = new Uint8Array(bytes);
  const meta = onnxMetadata(u8);
  const pre = meta['graft.preprocess'] ? (JSON.parse(meta['graft.preprocess']) as Preprocess) : undefined;
  const labels = meta['graft.labels'] ? (JSON.parse(meta['graft.labels']) as string[]) : undefined;
  if (!pre)
    throw new Error(
      'the model records no image preprocessing (graft.preprocess), so the page cannot prepare an image for it',
    );
  if (!labels) throw new Error('the model records no class names (graft.labels)');
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(u8, {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
  });
  const inputName = session.inputNames[0]!;
  const outputName = session.outputNames.includes('probabilities') ? 'probabilities' : session.outputNames[0]!;
  return {
    labels,
    preprocess: pre,
    inputName,
    outputName,
    async run(img: ImageData): Promise<Record<string, number>> {
      const x = normalize(img, pre);
      const feeds = { [inputName]: new ort.Tensor('float32', x, [1, pre.channels, pre.height, pre.width]) };
      const res = await session.run(feeds, [outputName]);
      let v = Array.from(res[outputName]!.data as Float32Array);
      if (outputName !== 'probabilities') v = softmax(v);
      return Object.fromEntries(labels.map((l, i) => [l, v[i]!]));
    },
  };
}

function softmax(v: number[]): number[] {
  const m = Math.max(...v),
    e = v.map((x) => Math.exp(x - m)),
    s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/**
 * RGBA pixels → C × H × W floats, value = (pixel/255 − mean[c]) / std[c] (Graft's normalize in
 * src/data/image.ts, computed the same way in float32): gray models take the luminance.
 */
export function normalize(img: ImageData, p: Preprocess): Float32Array {
  const hw = img.width * img.height,
    out = new Float32Array(p.channels * hw),
    d = img.data;
  const lut = new Float32Array(256);
  for (let k = 0; k < p.channels; k++) {
    const src = p.channels === 1 ? -1 : p.channelOrder === 'BGR' ? 2 - k : k;
    const mean = p.mean[k] ?? p.mean[0] ?? 0,
      std = p.std[k] ?? p.std[0] ?? 1;
    for (let v = 0; v < 256; v++) lut[v] = (v / 255 - mean) / std;
    for (let i = 0; i < hw; i++) {
      // sharp's grayscale: Rec. 709 luma on the sRGB values, rounded (equal channels give that value exactly)
      const v =
        src < 0 ? Math.round(0.2126 * d[4 * i]! + 0.7152 * d[4 * i + 1]! + 0.0722 * d[4 * i + 2]!) : d[4 * i + src]!;
      out[k * hw + i] = lut[v]!;
    }
  }
  return out;
}

/** Decode an image file and fit it to width × height on a canvas (stretch, or cover + centre crop). */
export async function fitImage(
  file: Blob,
  p: Pick<Preprocess, 'width' | 'height' | 'resize'>,
): Promise<{ canvas: HTMLCanvasElement; pixels: ImageData }> {
  const bmp = await createImageBitmap(file, {
    colorSpaceConversion: 'none',
    premultiplyAlpha: 'none',
    imageOrientation: 'from-image',
  });
  const canvas = document.createElement('canvas');
  canvas.width = p.width;
  canvas.height = p.height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  let sx = 0,
    sy = 0,
    sw = bmp.width,
    sh = bmp.height;
  if (p.resize === 'center-crop') {
    const scale = Math.max(p.width / bmp.width, p.height / bmp.height);
    sw = p.width / scale;
    sh = p.height / scale;
    sx = (bmp.width - sw) / 2;
    sy = (bmp.height - sh) / 2;
  }
  ctx.drawImage(bmp, sx, sy, sw, sh, 0, 0, p.width, p.height);
  bmp.close();
  return { canvas, pixels: ctx.getImageData(0, 0, p.width, p.height) };
}
