#!/usr/bin/env node
/** `graft`: the command line. Each command parses its flags and calls the library; no logic lives here. */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { GraftError } from '../util/errors.js';
import { availableDevices, checkDevice, requestedDevice } from '../runtime/device.js';
import { NoGradientRule } from '../autodiff/rule.js';
import { checkCommand } from './check.js';
import { gradCommand } from './grad.js';
import { trainCommand, legacyTrainArgv } from './train.js';
import { convertCommand } from './convert.js';
import { classifyCommand } from './classify.js';
import { predictCommand } from './predict.js';
import { evalCommand } from './eval.js';
import { curveCommand, curveOptions } from './curve.js';
import { adaptCommand, adaptOptions } from './adapt.js';
import { generateCommand } from './generate.js';
import { lmFinetuneCommand } from './lm-finetune.js';
import { translateCommand } from './translate.js';
import { translateTrainCommand } from './translate-train.js';
import { pullCommand, resolveCommandModels } from './pull.js';
import { modelsCommand } from './models.js';
import { exportCommand } from './export.js';
import { explainCommand } from './explain.js';
import { workerCommand } from './worker.js';
import { sweepCommand } from './sweep.js';
import { studioCommand } from './studio.js';
import { serveCommand } from './serve.js';

// package.json is two folders up from both src/cli/main.ts and dist/cli/main.js
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

const program = new Command();
program
  .name('graft')
  .version(version, '-V, --version', "print Graft's version")
  .description(
    'Transfer learning for Node.js: import pretrained models, compile ONNX training graphs, train with onnxruntime.',
  )
  .option('--threads <n>', "onnxruntime intra-op threads (default: GRAFT_THREADS or onnxruntime's choice)")
  .option(
    '--device <name>',
    `onnxruntime execution provider: ${availableDevices().join(', ')} (auto: CUDA when it starts, else the CPU with a warning; default: GRAFT_DEVICE or cpu)`,
  )
  .hook('preAction', (cmd) => {
    const t = cmd.opts()['threads'];
    if (t) process.env['GRAFT_THREADS'] = String(t);
    const d = cmd.opts()['device'];
    const dev = requestedDevice(d === undefined ? undefined : String(d));
    checkDevice(dev.device, dev.from); // an unknown name fails before any work
    process.env['GRAFT_DEVICE'] = dev.device;
  })
  // hf:ORG/NAME[@REV] and catalog names given as models become cached snapshot paths, here only.
  .hook('preAction', resolveCommandModels);

program
  .command('check')
  .description(
    "list the model's operators and any without a gradient rule, then check gradients of sampled parameters against finite differences",
  )
  .argument('<model>', 'an .onnx file or a model folder')
  .option('--json', 'print a JSON report')
  .option('--params <n>', 'parameters sampled for the finite-difference check (0 skips it)', '4')
  .option('--samples <n>', 'elements sampled per parameter', '6')
  .option('--seed <n>', 'random seed', '1')
  .action(checkCommand);

program
  .command('grad')
  .description('write the gradient of every trainable parameter for the given inputs')
  .argument('<model>', 'an .onnx file or a model folder')
  .requiredOption(
    '--feed <file>',
    'safetensors file with the model inputs, plus R (weighted-sum) or int64 labels (cross-entropy)',
  )
  .addOption(
    new Option('--loss <kind>', 'loss to differentiate')
      .choices(['weighted-sum', 'cross-entropy'])
      .default('weighted-sum'),
  )
  .requiredOption('--out <file>', 'safetensors file for the gradients')
  .action(gradCommand);

program.addCommand(trainCommand());

program
  .command('convert')
  .description(
    'convert a model (.tflite, .onnx, TF.js model.json, or a model folder) to one ONNX file, recording its image preprocessing and class names',
  )
  .argument('<input>', 'the model to convert')
  .argument('<output>', 'the ONNX file to write (written atomically: nothing is left on failure)')
  .option('--labels <file>', 'class names, one per line, stored in the model')
  .option('--mean <a,b,c>', 'per-channel mean in 0–1 units: value = (pixel/255 − mean) / std')
  .option('--std <a,b,c>', 'per-channel standard deviation in 0–1 units')
  .option('--size <WxH>', 'input image size')
  .addOption(new Option('--channel-order <order>', 'channel order the model expects').choices(['RGB', 'BGR']))
  .addOption(
    new Option('--resize <how>', 'how images are fitted to the input size').choices(['stretch', 'center-crop']),
  )
  .option('--json', 'print a JSON summary')
  .action(convertCommand);

program
  .command('export')
  .description(
    'quantize a classifier folder to int8 (standard ONNX QDQ: per-channel int8 weights, uint8/int8 activations calibrated on sample data); metadata and labels kept',
  )
  .argument('<model-dir>', 'a classifier folder (model.onnx inside), image or text')
  .argument('<out>', 'the folder to write')
  .option('--int8', 'static post-training int8 quantization (required)')
  .option(
    '--calibration <data>',
    'calibration data: an image folder or IDX images; for a text classifier a CSV/TSV/JSONL file (default: the training data its report.json names)',
  )
  .option('--labels-data <file>', 'IDX calibration data: the labels file (default: guessed from the images file name)')
  .option(
    '--text-column <name>',
    "text classifier: the calibration file's text column (default, on the training data: the column it was trained on)",
  )
  .option('--label-column <name>', "text classifier: the calibration file's label column")
  .addOption(
    new Option('--method <m>', 'activation range calibration')
      .choices(['minmax', 'percentile', 'entropy'])
      .default('minmax'),
  )
  .option('--percentile <p>', '--method percentile: the percentile kept on each side', '99.99')
  .addOption(new Option('--activations <t>', 'activation type').choices(['uint8', 'int8']).default('uint8'))
  .option('--samples <n>', 'calibration examples drawn from the data', '200')
  .option('--batch-size <n>', 'examples per calibration run', '16')
  .option('--seed <n>', 'seed for drawing the calibration examples', '0')
  .option('--json', 'print the report as JSON')
  .action(async (dir: string, out: string, o) => {
    await exportCommand(dir, out, o);
  });

program
  .command('classify')
  .description('classify images with a model, following the preprocessing it records; prints the top classes')
  .argument('<model>', 'an .onnx or .tflite file, a TF.js model.json, or a model folder')
  .argument('<images...>', 'image files (JPEG, PNG, WebP, BMP, …)')
  .option('--top <k>', 'classes to report per image', '5')
  .option('--labels <file>', 'class names, one per line (default: the labels stored in the model)')
  .option('--json', 'print JSON')
  .action(classifyCommand);

program
  .command('predict')
  .description(
    'classify images with a saved classifier (a folder written by `graft train`, or any model recording its preprocessing)',
  )
  .requiredOption('--model <path>', 'the classifier folder (model.onnx inside) or an .onnx file')
  .argument('<inputs...>', 'image files, or texts for a text classifier folder')
  .option('--top <k>', 'classes to report per image', '3')
  .option('--json', 'print JSON')
  .action(predictCommand);

program
  .command('eval')
  .description(
    'evaluate a saved classifier on a labelled dataset: accuracy, macro-F1, per-class precision/recall, confusion matrix',
  )
  .requiredOption('--model <path>', 'the classifier folder (model.onnx inside) or an .onnx file')
  .requiredOption(
    '--data <path>',
    "an image folder (one subfolder per class, named as the model's classes) or IDX images; for a text classifier folder, a CSV/TSV/JSONL file labelled with its class names",
  )
  .option('--labels-data <file>', 'IDX data: the labels file (default: guessed from the images file name)')
  .option('--max-per-class <n>', 'use only the first N examples of each class')
  .option('--batch-size <n>', 'images (or texts) per onnxruntime run', '32')
  .option(
    '--report <file>',
    'write a report: OUT.html (self-contained, with OUT.json beside it) or OUT.json; any other path is a folder receiving report.html and report.json',
  )
  .option('--json', 'print the metrics as JSON')
  .option(
    '--text-column <name>',
    'text classifier: the column (CSV header name, 0-based index for headerless files, or JSONL field) holding the text',
  )
  .option(
    '--label-column <name>',
    'text classifier: the column holding the label (default: label, or guessed for headerless files)',
  )
  .option(
    '--max-length <n>',
    'text classifier: longest input in tokens (longer texts are truncated with a warning; default: the length it was trained with)',
  )
  .action(evalCommand);

curveOptions(
  program
    .command('curve')
    .description(
      'data-efficiency curve: test accuracy vs labels per class for training from scratch, frozen features + logistic head, and fine-tuning, over several seeds; writes a table and an SVG plot',
    ),
).action(curveCommand);

adaptOptions(
  program
    .command('adapt')
    .description(
      'domain adaptation: fit to unlabelled target images with CORAL, subspace alignment or self-training on features (with --source), or adapt the network itself (adabn, entropy, self-training without --source); hyperparameters chosen without target labels',
    ),
).action(adaptCommand);

const collect = (v: string, prev: string[] = []) => [...prev, v];

program
  .command('generate')
  .description(
    'continue text prompts with a causal language model (GPT-2-style ONNX + tokenizer): greedy, or sampled with temperature, top-k and top-p',
  )
  .requiredOption('--model <path>', 'a text model folder (onnx/model.onnx + tokenizer.json) or an .onnx file')
  .option(
    '--tokenizer <path>',
    'tokenizer folder or tokenizer.json (default: the model folder, or beside the .onnx file)',
  )
  .requiredOption('--prompt <text>', 'a prompt (repeat for a batch)', collect)
  .option('--max-new-tokens <n>', 'tokens to generate at most (stops earlier at end-of-text)', '40')
  .option('--temperature <t>', 'sample at this temperature (0 = greedy)')
  .option('--top-k <k>', 'sample among the k most likely tokens')
  .option('--top-p <p>', 'nucleus sampling: among the most likely tokens covering probability p')
  .option('--greedy', 'always take the most likely token (the default when no sampling flag is given)')
  .option('--seed <n>', 'random seed for sampling', '1')
  .option('--no-cache', 're-run the whole prefix for every new token (no key/value cache; for comparison)')
  .option('--json', 'print JSON')
  .action(generateCommand);

program
  .command('lm-finetune')
  .description(
    'fine-tune a causal language model folder on a text corpus (next-token loss over windows), report held-out perplexity before and after, save a folder for `graft generate`',
  )
  .requiredOption('--model <dir>', 'a text model folder (GPT-2-style: onnx/model.onnx, tokenizer.json, config.json)')
  .requiredOption(
    '--data <file>',
    'corpus: .txt (documents separated by blank lines), .csv/.tsv (a text column) or .jsonl (a text field), optionally .gz',
  )
  .requiredOption('--out <dir>', 'folder to write (onnx/model.onnx + tokenizer and config files)')
  .option(
    '--text-column <name>',
    'CSV: header name or 0-based index of the text column (default: the longest column, no header); JSONL: the field (default text)',
  )
  .option('--epochs <n>', 'passes over the training windows', '1')
  .option('--batch-size <n>', 'windows per step', '8')
  .option('--lr <x>', 'peak learning rate (AdamW, 5% linear warmup, linear decay)', '3e-4')
  .option('--window <n>', "tokens per window (default: the model's positions)")
  .option('--val-fraction <x>', 'fraction of documents held out for perplexity', '0.1')
  .option('--max-steps <n>', 'stop after this many steps')
  .option('--seed <n>', 'random seed', '0')
  .option('--json', 'print a JSON summary')
  .option(
    '--checkpoint-dir <dir>',
    'write a checkpoint per epoch into this folder (weights, optimizer, schedule and shuffling state)',
  )
  .option(
    '--resume',
    'continue from the newest checkpoint in --checkpoint-dir: the same weights, bit for bit, as a run never interrupted',
  )
  .option('--keep-checkpoints <n>', 'keep only the newest N checkpoints')
  .action(lmFinetuneCommand);

program
  .command('translate')
  .description(
    'translate texts with an encoder-decoder model folder (written by `graft translate-train`), greedy decoding',
  )
  .requiredOption('--model <dir>', 'translation model folder')
  .argument('<texts...>', 'texts to translate')
  .option('--max-new-tokens <n>', "longest translation in tokens (default: the model's max_target_length)")
  .option('--json', 'print JSON')
  .action(translateCommand);

program
  .command('translate-train')
  .description(
    'warm-start an encoder-decoder from a BERT-style encoder and a GPT-2-style decoder (new cross-attention), fine-tune it on parallel text, report held-out loss and BLEU',
  )
  .requiredOption('--encoder <dir>', 'encoder model folder (BERT-style)')
  .requiredOption('--decoder <dir>', 'decoder model folder (GPT-2-style), same vocabulary')
  .requiredOption('--data <file>', 'parallel JSONL (optionally .gz), one object per line')
  .requiredOption('--source-field <name>', 'field holding the source text')
  .requiredOption('--target-field <name>', 'field holding the target text')
  .requiredOption('--out <dir>', 'folder to write')
  .option('--steps <n>', 'training steps', '300')
  .option('--batch-size <n>', 'pairs per step', '32')
  .option('--lr <x>', 'peak learning rate', '5e-4')
  .option('--max-length <n>', 'skip pairs longer than this many tokens on either side', '32')
  .option('--max-pairs <n>', 'use at most this many training pairs')
  .option('--val-count <n>', 'pairs held out for loss and BLEU', '200')
  .option('--random-init', 're-initialize every weight (the from-scratch baseline)')
  .option('--seed <n>', 'random seed', '0')
  .option('--json', 'print a JSON summary')
  .option(
    '--checkpoint-dir <dir>',
    'write a checkpoint every --checkpoint-every steps into this folder (weights, optimizer, schedule and shuffling state)',
  )
  .option('--checkpoint-every <n>', 'steps between checkpoints (default: one pass over the training pairs)')
  .option(
    '--resume',
    'continue from the newest checkpoint in --checkpoint-dir: the same weights, bit for bit, as a run never interrupted',
  )
  .option('--keep-checkpoints <n>', 'keep only the newest N checkpoints')
  .action(translateTrainCommand);

program
  .command('models')
  .description(
    'list the curated model catalog (what each model is for, source, licence, input and preprocessing), or show one entry in full',
  )
  .argument('[name]', 'a catalog name: show that entry')
  .option('--json', 'print JSON')
  .action(modelsCommand);

program
  .command('pull')
  .description(
    'download a model into the Hugging Face cache (HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub): resumable, verified, shared with Python and Transformers.js',
  )
  .argument('<id>', 'a hub model (ORG/NAME or hf:ORG/NAME[@REV]) or a catalog name (graft models)')
  .option('--revision <rev>', 'branch, tag or commit (default main)')
  .option(
    '--include <glob...>',
    "files to fetch, as huggingface_hub patterns (default: *.json *.txt and the fp32 onnx/model.onnx or model.onnx; '*' for everything)",
  )
  .option('--json', 'print a JSON summary')
  .action(pullCommand);

program.addCommand(explainCommand());
program.addCommand(workerCommand());
program.addCommand(sweepCommand());
program.addCommand(studioCommand());
program.addCommand(serveCommand());

try {
  await program.parseAsync(legacyTrainArgv(process.argv));
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode); // commander printed the message (or the help)
  if (e instanceof GraftError || e instanceof NoGradientRule) {
    process.stderr.write(`graft: ${e.message}\n`);
    if (e instanceof GraftError && e.hint) process.stderr.write(`${e.hint}\n`);
    process.exit(2);
  }
  const err = e as Error;
  process.stderr.write(
    `graft: unexpected error: ${err.message}\n${process.env['GRAFT_DEBUG'] ? err.stack + '\n' : '(set GRAFT_DEBUG=1 for a stack trace)\n'}`,
  );
  process.exit(1);
}
