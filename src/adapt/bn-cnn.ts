/**
 * A small convolutional classifier with BatchNormalization, built from nothing as an ONNX Graph:
 * the model on which normalization-based adaptation (AdaBN, TENT on BN affine parameters) is
 * shown when the pretrained model at hand has no normalization layers.
 *
 *   input [N, C, S, S]
 *   → Conv 3×3 (pad 1, no bias) → BatchNormalization → Relu → MaxPool 2×2
 *   → Conv 3×3 (pad 1, no bias) → BatchNormalization → Relu → MaxPool 2×2
 *   → Flatten → Gemm → logits [N, classes]
 *
 * It is src/heads/scratch-cnn.ts's small CNN with `batchNorm` on. Train it with `batchNorm: 'batch'`
 * (src/train/training-graph.ts) so the running statistics are those of the training data.
 */
import type { Graph } from '../graph/graph.js';
import { smallCnn, type SmallCnnOptions } from '../heads/scratch-cnn.js';

export type BnCnnOptions = Pick<SmallCnnOptions, 'channels' | 'size' | 'classes' | 'seed' | 'filters'>;

export function smallBnCnn(o: BnCnnOptions): Graph {
  return smallCnn({ ...o, batchNorm: true, name: 'small-bn-cnn' });
}
