/**
 * Execution providers, as a `device`: which ones this onnxruntime-node build offers here, starting
 * one once per process on a one-operator model, and, when it cannot start, a GraftError naming the
 * missing library and how onnxruntime-node installs it. 'auto' takes the first accelerator that
 * starts, else the CPU with one warning per process.
 */
import * as ort from 'onnxruntime-node';
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Graph } from '../graph/graph.js';
import { encodeOnnx } from '../formats/onnx.js';
import { GraftError } from '../util/errors.js';

export interface ResolvedDevice {
  /** The device sessions run on ('cpu' after an auto fallback). */
  device: string;
  /** What was asked for ('auto', 'cuda', …). */
  requested: string;
  /** onnxruntime execution providers, in preference order (the CPU last, for operators the device lacks). */
  providers: string[];
  /** With 'auto' on the CPU: why no accelerator started. */
  fallbackReason?: string;
}

/** Execution providers per device; the CPU provider comes last so operators a device lacks still run. */
const PROVIDERS: Record<string, string[]> = {
  cpu: ['cpu'],
  cuda: ['cuda', 'cpu'],
  tensorrt: ['tensorrt', 'cuda', 'cpu'],
  webgpu: ['webgpu', 'cpu'],
  dml: ['dml', 'cpu'],
  coreml: ['coreml', 'cpu'],
};

/** What 'auto' tries, in order, among those this build lists (TensorRT's engine builds and experimental WebGPU are opt-in). */
const AUTO = ['cuda', 'dml', 'coreml'];

const NAMES: Record<string, string> = {
  cuda: 'CUDA',
  tensorrt: 'TensorRT',
  webgpu: 'WebGPU',
  dml: 'DirectML',
  coreml: 'CoreML',
};

/** Execution providers this onnxruntime-node build lists for this platform (linux x64: cpu, webgpu, cuda, tensorrt). */
export function listedProviders(): string[] {
  return ort.listSupportedBackends().map((b) => b.name);
}

/** Valid `device` values here: the listed providers Graft knows how to use, then 'auto'. */
export function availableDevices(): string[] {
  return [...listedProviders().filter((p) => p in PROVIDERS), 'auto'];
}

/** The device asked for: opts.device, else GRAFT_DEVICE, else 'cpu'. */
export function requestedDevice(device?: string): { device: string; from: string } {
  if (device !== undefined) return { device: device.trim().toLowerCase(), from: '' };
  const env = process.env['GRAFT_DEVICE'];
  if (env) return { device: env.trim().toLowerCase(), from: ' (from GRAFT_DEVICE)' };
  return { device: 'cpu', from: '' };
}

/** An unknown device name is a GraftError listing the valid ones. */
export function checkDevice(device: string, from = ''): void {
  const valid = availableDevices();
  if (valid.includes(device)) return;
  const other =
    device in PROVIDERS
      ? `; ${NAMES[device] ?? device} is not in onnxruntime-node ${ort.env.versions.common ?? ''} for ${process.platform}/${process.arch}`
      : '';
  throw new GraftError(
    `unknown device '${device}'${from}${other}; valid devices here: ${valid.join(', ')}`,
    'auto: CUDA when it starts, else the CPU with a warning',
  );
}

const resolved = new Map<string, Promise<ResolvedDevice>>();
const probes = new Map<string, Promise<GraftError | undefined>>();
let warned = false;

/**
 * The execution providers for a device, checked once per process: an unknown device, or one that
 * cannot start, is a GraftError; 'auto' falls back to the CPU with one warning on stderr
 * (`graft: warning: device auto: …`) per process.
 */
export function resolveDevice(device?: string): Promise<ResolvedDevice> {
  const req = requestedDevice(device);
  if (req.device === 'cpu' || req.device === '')
    return Promise.resolve({ device: 'cpu', requested: 'cpu', providers: PROVIDERS['cpu']! });
  let r = resolved.get(req.device);
  if (!r) {
    r = resolveUncached(req.device, req.from);
    resolved.set(req.device, r);
  }
  return r;
}

async function resolveUncached(want: string, from: string): Promise<ResolvedDevice> {
  checkDevice(want, from);
  const valid = availableDevices();
  if (want !== 'auto') {
    const err = await probe(want);
    if (err) throw err;
    return { device: want, requested: want, providers: PROVIDERS[want]! };
  }
  const reasons: string[] = [];
  for (const d of AUTO.filter((x) => valid.includes(x))) {
    const err = await probe(d);
    if (!err) return { device: d, requested: 'auto', providers: PROVIDERS[d]! };
    reasons.push(err.message);
  }
  const fallbackReason = reasons.length
    ? reasons.join('; ')
    : `onnxruntime-node offers no accelerator for ${process.platform}/${process.arch} that auto uses`;
  if (!warned) {
    warned = true;
    process.stderr.write(`graft: warning: device auto: ${fallbackReason}; running on the CPU\n`);
  }
  return { device: 'cpu', requested: 'auto', providers: PROVIDERS['cpu']!, fallbackReason };
}

/** A one-operator model (Relu on one float), for starting a provider. */
function probeModel(): Uint8Array {
  const g = new Graph();
  g.name = 'graft-device-probe';
  g.inputs.push({ name: 'x', dtype: 'float32', shape: [1] });
  g.outputs.push({ name: 'y', dtype: 'float32', shape: [1] });
  g.nodes.push({ name: 'relu', opType: 'Relu', domain: '', inputs: ['x'], outputs: ['y'], attrs: {} });
  return encodeOnnx(g);
}

/** Start a provider once per process; undefined when it runs, else the error to report. */
function probe(device: string): Promise<GraftError | undefined> {
  let p = probes.get(device);
  if (!p) {
    p = (async () => {
      // without a Vulkan loader Dawn finds no adapter (and prints its own warning): say so without trying
      if (device === 'webgpu' && process.platform === 'linux' && !hasSystemLibrary('libvulkan.so.1'))
        return diagnose(device, '');
      // onnxruntime logs a failed provider load from its process-wide logger, which takes its level
      // once, at the first session of the process; Graft reports the failure itself.
      const level = ort.env.logLevel;
      ort.env.logLevel = 'fatal';
      try {
        const s = await ort.InferenceSession.create(probeModel(), {
          executionProviders: PROVIDERS[device]!,
          logSeverityLevel: 3,
        });
        try {
          await s.run({ x: new ort.Tensor('float32', new Float32Array([1]), [1]) });
        } finally {
          await s.release();
        }
        return undefined;
      } catch (e) {
        return diagnose(device, e instanceof Error ? e.message : String(e));
      } finally {
        ort.env.logLevel = level;
      }
    })();
    probes.set(device, p);
  }
  return p;
}

/** Where onnxruntime-node keeps its native libraries for this platform. */
export function ortBinaryDir(): string {
  const pkg = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
  return join(dirname(pkg), 'bin', 'napi-v6', process.platform, process.arch);
}

/** Libraries the dynamic loader cannot find for a shared object (from `ldd`); [] when ldd is unavailable. */
export function missingLibraries(file: string): string[] {
  const r = spawnSync('ldd', [file], { encoding: 'utf8' });
  if (r.error || typeof r.stdout !== 'string') return [];
  return parseLddMissing(r.stdout);
}

/** The `NAME => not found` lines of ldd's output. */
export function parseLddMissing(out: string): string[] {
  const names = [...out.matchAll(/^\s*(\S+)\s+=>\s+not found\s*$/gm)].map((m) => m[1]!);
  return [...new Set(names)];
}

/** The files onnxruntime-node's install script adds for CUDA and TensorRT on linux x64 (script/install-metadata.js). */
export function gpuProviderFiles(device: 'cuda' | 'tensorrt'): string[] {
  return [
    'libonnxruntime_providers_shared.so',
    'libonnxruntime_providers_cuda.so',
    ...(device === 'tensorrt' ? ['libonnxruntime_providers_tensorrt.so'] : []),
  ];
}

export const GPU_INSTALL_HINT =
  'onnxruntime-node downloads its CUDA/TensorRT provider libraries (NuGet package Microsoft.ML.OnnxRuntime.Gpu.Linux, from api.nuget.org) ' +
  "in its install script, which was skipped or failed here (Graft's .npmrc sets onnxruntime-node-install=skip so installs work offline). " +
  'Add them with: ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node  (CUDA 12 and cuDNN 9 must then be on the library path). ' +
  'Or run with --device cpu, or --device auto to fall back to the CPU.';

const CUDA_LIBS_HINT =
  "onnxruntime-node 1.30's CUDA provider needs the CUDA 12 runtime (cudart, cuBLAS, cuFFT, cuRAND) and cuDNN 9; TensorRT also needs TensorRT 10. " +
  'Install them and make them visible to the loader (ldconfig or LD_LIBRARY_PATH), or run with --device cpu / --device auto.';

/**
 * Why a provider did not start, as a GraftError naming what is missing. Exported for tests:
 * `binDir` is where onnxruntime-node's libraries are looked for.
 */
export function diagnose(device: string, ortMessage: string, binDir = ortBinaryDir()): GraftError {
  const name = NAMES[device] ?? device;
  if (device === 'cuda' || device === 'tensorrt') {
    const files = gpuProviderFiles(device);
    const absent = files.filter((f) => !existsSync(join(binDir, f)));
    if (absent.length)
      return new GraftError(
        `${name} cannot start: onnxruntime-node's ${absent.join(', ')} ${absent.length > 1 ? 'are' : 'is'} not installed (looked in ${binDir})`,
        GPU_INSTALL_HINT,
      );
    const missing = [...new Set(files.flatMap((f) => missingLibraries(join(binDir, f))))];
    if (missing.length)
      return new GraftError(
        `${name} cannot start: the loader cannot find ${missing.join(', ')} (needed by onnxruntime-node's ${name} provider)`,
        CUDA_LIBS_HINT,
      );
    return new GraftError(
      `${name} cannot start: ${cleanMessage(ortMessage)}`,
      'check that an NVIDIA GPU and its driver are present (nvidia-smi), or run with --device cpu / --device auto',
    );
  }
  if (device === 'webgpu') {
    const vulkan = process.platform !== 'linux' || hasSystemLibrary('libvulkan.so.1');
    if (!vulkan)
      return new GraftError(
        `WebGPU cannot start: libvulkan.so.1 is not installed (onnxruntime's WebGPU uses Vulkan on Linux)`,
        "install the Vulkan loader and a GPU driver with Vulkan support (Debian: libvulkan1 and mesa-vulkan-drivers or the vendor's driver), or run with --device cpu / --device auto",
      );
    return new GraftError(
      `WebGPU cannot start: ${cleanMessage(ortMessage)}`,
      "onnxruntime's WebGPU needs a GPU with a Vulkan driver on Linux; or run with --device cpu / --device auto",
    );
  }
  return new GraftError(`${name} cannot start: ${cleanMessage(ortMessage)}`);
}

function cleanMessage(m: string): string {
  // drop onnxruntime's source location prefix: "/onnxruntime_src/…cc:136 fn(…) cond was false. Text"
  const k = m.lastIndexOf(' was false. ');
  return (k >= 0 ? m.slice(k + ' was false. '.length) : m)
    .replace(/^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*[A-Z_]+\s*:\s*/, '')
    .trim();
}

/** Whether the dynamic loader knows a library (ldconfig's cache, or a folder on LD_LIBRARY_PATH). */
function hasSystemLibrary(name: string): boolean {
  for (const d of (process.env['LD_LIBRARY_PATH'] ?? '').split(':')) if (d && existsSync(join(d, name))) return true;
  for (const ldconfig of ['ldconfig', '/sbin/ldconfig', '/usr/sbin/ldconfig']) {
    const r = spawnSync(ldconfig, ['-p'], { encoding: 'utf8' });
    if (!r.error && typeof r.stdout === 'string') return r.stdout.includes(name);
  }
  return true; // cannot tell: do not claim it is missing
}
