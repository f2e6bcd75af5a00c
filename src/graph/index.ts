/**
 * `graft/graph`: The graph IR: Graph, nodes and tensors, the Builder that emits ONNX nodes, and graph rewrites.
 */
export { Graph, type Node, type ValueInfo, type Attr, type Dim } from './graph.js';
export { type Tensor, type DType, float32, int64, toNumbers } from './tensor.js';
export { Builder, A } from './builder.js';
export { upgradeOpset, makeBatchDynamic } from './rewrites.js';
