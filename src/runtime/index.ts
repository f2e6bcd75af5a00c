/**
 * `graft/runtime`: The onnxruntime session Graft runs graphs with (CPU, or CUDA where it starts).
 */
export { Session, type Feeds, type RuntimeOptions } from './session.js';
