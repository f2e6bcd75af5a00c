/**
 * The demo: fine-tune a real pretrained MNIST network on a different real handwriting dataset
 * (the 8×8 digits), with 50 labels per class, and compare accuracy before and after.
 *   npm run demo
 */
import { requireAsset } from '../src/data/assets.js';
import { finetuneImageCsv } from '../src/finetune/classifier.js';
import { GraftError } from '../src/util/errors.js';

try {
  const model = requireAsset('models/onnxjs-demo/mnist.onnx');
  const data = requireAsset('datasets/digits-8x8/digits.csv.gz');
  console.log(`model: ${model}\ndata:  ${data}\nfine-tuning with 50 labels per class…`);
  const r = await finetuneImageCsv(model, data, {
    labelsPerClass: 50,
    epochs: 30,
    batchSize: 32,
    lr: 3e-3,
    schedule: { kind: 'cosine' },
    pixelMax: 16,
    seed: 0,
    out: 'out/mnist-digits.onnx',
    onEpoch: ({ epoch, loss }) => console.log(`  epoch ${String(epoch).padStart(2)}  loss ${loss.toFixed(4)}`),
  });
  console.log(
    `accuracy on ${r.testExamples} held-out digits: ${r.zeroShotAccuracy.toFixed(3)} before → ${r.testAccuracy.toFixed(3)} after fine-tuning`,
  );
  console.log(`${r.steps} training steps in ${r.seconds.toFixed(1)} s; saved ${r.out}`);
} catch (e) {
  if (e instanceof GraftError) {
    console.error(e.message);
    process.exit(2);
  }
  throw e;
}
