/**
 * `graft/export`: Exporting trained models: a standalone fine-tuned classifier with a parity check, and static int8 (QDQ) quantization with calibration.
 */
export {
  exportFinetuned,
  exportGraph,
  stripTraining,
  type FinetuneExportOptions,
  type ExportResult,
} from './export.js';
export {
  exportInt8,
  quantizeStatic,
  quantizeGraph,
  planQuantization,
  foldConstants,
  quantizeWeight,
  weightGrid,
  type Int8ExportOptions,
  type Int8Report,
  type CalibrationSet,
  type QuantizeOptions,
} from './quantize.js';
export {
  calibrate,
  Histogram,
  rangeOf,
  qparams,
  entropyThreshold,
  type CalibrationMethod,
  type ActivationType,
} from './calibrate.js';
export {
  exportInt8FromData,
  calibrationSet,
  trainingDataOf,
  type CalibrationDataOptions,
} from './int8-data.js';
