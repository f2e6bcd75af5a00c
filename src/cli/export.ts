/**
 * `graft export MODEL_DIR OUT --int8`: a classifier folder quantized to int8 (QDQ ONNX), calibrated on
 * sample data: the flags, one call into exportInt8FromData (src/export/int8-data.ts), the summary.
 */
import { join } from 'node:path';
import { exportInt8, type CalibrationSet, type Int8Report } from '../export/quantize.js';
import { exportInt8FromData } from '../export/int8-data.js';
import { CALIBRATION_METHODS, type ActivationType, type CalibrationMethod } from '../export/calibrate.js';
import { column, int, num } from './parse.js';
import { GraftError } from '../util/errors.js';

export interface ExportFlags {
  int8?: boolean;
  calibration?: string;
  labelsData?: string;
  textColumn?: string;
  labelColumn?: string;
  method: string;
  percentile: string;
  activations: string;
  samples: string;
  batchSize: string;
  seed: string;
  json?: boolean;
}

export async function exportCommand(modelDir: string, out: string, o: ExportFlags): Promise<Int8Report> {
  if (!o.int8)
    throw new GraftError(
      'graft export writes int8 models: give --int8',
      `e.g. graft export --int8 ${modelDir} ${out} --calibration DATA`,
    );
  const method = o.method as CalibrationMethod;
  if (!CALIBRATION_METHODS.includes(method))
    throw new GraftError(`--method must be one of ${CALIBRATION_METHODS.join(', ')}, got '${o.method}'`);
  if (o.activations !== 'uint8' && o.activations !== 'int8')
    throw new GraftError(`--activations must be uint8 or int8, got '${o.activations}'`);
  const { report: r, data } = await exportInt8FromData(modelDir, out, {
    ...(o.calibration !== undefined ? { calibration: o.calibration } : {}),
    ...(o.labelsData !== undefined ? { labelsData: o.labelsData } : {}),
    ...(o.textColumn !== undefined ? { textColumn: column(o.textColumn) } : {}),
    ...(o.labelColumn !== undefined ? { labelColumn: column(o.labelColumn) } : {}),
    method,
    percentile: num(o.percentile, '--percentile'),
    activations: o.activations as ActivationType,
    samples: int(o.samples, '--samples'),
    batchSize: int(o.batchSize, '--batch-size'),
    seed: int(o.seed, '--seed'),
  });
  if (o.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  else {
    const q = Object.entries(r.summary.quantized)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ');
    process.stdout.write(
      `int8 (${r.method}, ${r.activations} activations) calibrated on ${r.calibrationExamples} ${r.kind === 'text' ? 'texts' : 'images'} from ${data}\n` +
        `quantized: ${q || 'none'}${r.summary.embeddings ? `, ${r.summary.embeddings} embedding tables` : ''}${r.summary.exactGrids ? ` (${r.summary.exactGrids} weights kept their uint8 grid's step: ${r.summary.exactChannels} of ${r.summary.gridChannels} channels exact)` : ''}; float32: ${r.summary.float.length ? r.summary.float.map((f) => `${f.op} ${f.node} (${f.reason})`).join('; ') : 'none'}\n` +
        `size: ${(r.bytes.float / 1e6).toFixed(2)} MB → ${(r.bytes.int8 / 1e6).toFixed(2)} MB (${r.bytes.ratio.toFixed(2)}× smaller); top-1 agreement with float on ${r.check.examples} calibration examples: ${r.check.agreement.toFixed(3)}\n` +
        `saved ${r.path} (report: ${join(out, 'quantization.json')})\n`,
    );
  }
  return r;
}

/** `graft train … --int8`: quantize the folder just saved into `${out}-int8` (default calibration settings). */
export async function int8PostStep(out: string, data: CalibrationSet, json: boolean): Promise<Int8Report> {
  const r = await exportInt8(out, `${out}-int8`, data);
  if (!json)
    process.stdout.write(
      `int8: saved ${r.path} (${r.bytes.ratio.toFixed(2)}× smaller; ${r.method} calibration on ${r.calibrationExamples} training examples)\n`,
    );
  else process.stderr.write(`int8: saved ${r.path}\n`);
  return r;
}
