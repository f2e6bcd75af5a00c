/**
 * `graft/formats`: Reading and writing models: ONNX, safetensors, TFLite, TF.js (layers and graph models), Transformers.js folders, conversion, and the preprocessing/labels metadata a model records.
 */
export { readOnnx, writeOnnx, encodeOnnx, decodeOnnx } from './onnx.js';
export { readSafetensors, writeSafetensors, encodeSafetensors, decodeSafetensors } from './safetensors.js';
export { loadModel } from './load.js';
export { readTflite, decodeTflite } from './tflite.js';
export { convertModel } from './convert.js';
export { getPreprocess, setPreprocess, getLabels, setLabels, type ImagePreprocess } from './preprocess.js';
export { readTfjs, readNsfwjs } from './tfjs.js';
export { preprocessFromHfConfig, labelsFromHfConfig, chooseFolderOnnx, assertTrainableWeights } from './hf-folder.js';
