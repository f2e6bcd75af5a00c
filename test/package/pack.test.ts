/**
 * Graft as a dependency, as a user gets it: `npm pack`, then the tarball installed into a fresh
 * project with no network (a network namespace of its own, `unshare -n`; packages come from npm's
 * cache, `--offline`). The consumer's .npmrc holds the documented CPU-only line, so onnxruntime-node's
 * install script skips its CUDA download (which would need NuGet). The installed `graft` command and
 * `import { finetuneImageCsv } from 'graft'` must then work, the latter on the demo files the package
 * bundles. Skipped, with the reason, where network namespaces are not permitted, except in CI
 * (GRAFT_REQUIRE_ASSETS=1 or CI set), where that is a failure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/data/assets.js';

const inCi = process.env['GRAFT_REQUIRE_ASSETS'] === '1' || !!process.env['CI'];
const unshareWorks = process.platform === 'linux' && spawnSync('unshare', ['-n', 'true']).status === 0;
const skip =
  unshareWorks || inCi
    ? false
    : 'no network namespace here (`unshare -n` is not permitted or not Linux): the offline install cannot be proven';

/** The environment without any onnxruntime-node install setting, so only the consumer's own config counts. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(npm_|ONNXRUNTIME_NODE_INSTALL)/i.test(k)) delete env[k];
  return env;
}

function sh(cmd: string, args: string[], cwd: string, offline = false): SpawnSyncReturns<string> {
  const [c, a] = offline ? ['unshare', ['-n', cmd, ...args]] : [cmd, args];
  const r = spawnSync(c, a, { cwd, env: cleanEnv(), encoding: 'utf8', maxBuffer: 1 << 26, timeout: 600_000 });
  return r;
}

const ok = (r: SpawnSyncReturns<string>, what: string) =>
  assert.equal(r.status, 0, `${what} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);

/**
 * The consumer's lock file: graft from the tarball, and every package graft needs at run time at the
 * version and place the project's own lock file gives it. An offline install then needs only what npm's
 * cache holds after the project's `npm ci` (resolving version ranges anew would need the registry's
 * package indexes, which that install does not cache).
 */
function consumerLock(
  tgz: string,
  graftPkg: {
    version: string;
    license: string;
    dependencies: Record<string, string>;
    bin: Record<string, string>;
    engines: Record<string, string>;
  },
): object {
  const lock = JSON.parse(readFileSync(join(projectRoot, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, Record<string, unknown>>;
  };
  const packages: Record<string, unknown> = {
    '': { name: 'graft-consumer', version: '1.0.0', dependencies: { graft: `file:${tgz}` } },
    'node_modules/graft': {
      version: graftPkg.version,
      resolved: `file:${tgz}`,
      license: graftPkg.license,
      dependencies: graftPkg.dependencies,
      bin: graftPkg.bin,
      engines: graftPkg.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!path.startsWith('node_modules/') || entry['dev'] || entry['link']) continue;
    const { devOptional, ...rest } = entry;
    packages[path] = devOptional ? { ...rest, optional: true } : rest;
  }
  return { name: 'graft-consumer', version: '1.0.0', lockfileVersion: 3, requires: true, packages };
}

test('npm pack → npm install ./graft-*.tgz offline with the CPU-only .npmrc line: npx graft and import from "graft" work', {
  skip,
  timeout: 900_000,
}, () => {
  assert.ok(unshareWorks, 'CI must be able to run `unshare -n` (run as root, or allow unprivileged user namespaces)');
  const dir = mkdtempSync(join(tmpdir(), 'graft-pack-'));
  try {
    // pack (the prepare script builds dist/ from src/ first)
    const packed = sh('npm', ['pack', '--pack-destination', dir, '--json'], projectRoot);
    ok(packed, 'npm pack');
    const files = (
      JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[]
    )[0]!;
    const paths = files.files.map((f) => f.path);
    for (const p of [
      'bin/graft.js',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/main.js',
      'README.md',
      'package.json',
      'examples/assets/models/onnxjs-demo/mnist.onnx',
      'examples/assets/datasets/digits-8x8/digits.csv.gz',
      'examples/assets/README.md',
      ...Object.values(
        (
          JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as {
            exports: Record<string, { default: string; types: string }>;
          }
        ).exports,
      ).flatMap((e) => [e.default.slice(2), e.types.slice(2)]),
    ])
      assert.ok(paths.includes(p), `${p} is not in the package`);
    assert.ok(
      !paths.some((p) => /^(src|test|bench)\//.test(p) || (p.endsWith('.ts') && !p.endsWith('.d.ts'))),
      `sources in the package: ${paths
        .filter((p) => /^(src|test|bench)\//.test(p))
        .slice(0, 5)
        .join(', ')}`,
    );
    const tgz = readdirSync(dir).find((f) => /^graft-.*\.tgz$/.test(f));
    assert.ok(tgz, 'npm pack wrote no graft-*.tgz');

    // a fresh consumer project: the documented CPU-only line in its .npmrc, nothing else
    const app = join(dir, 'app');
    spawnSync('mkdir', [app]);
    const graftPkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8'));
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify(
        {
          name: 'graft-consumer',
          version: '1.0.0',
          private: true,
          type: 'module',
          dependencies: { graft: `file:../${tgz}` },
        },
        null,
        2,
      ),
    );
    writeFileSync(join(app, 'package-lock.json'), JSON.stringify(consumerLock(`../${tgz}`, graftPkg), null, 2));
    writeFileSync(join(app, '.npmrc'), 'onnxruntime-node-install=skip\n');

    // without network: onnxruntime-node's own download cannot work, so the install passing proves the skip
    const installed = sh('npm', ['install', '--offline', '--no-audit', '--no-fund'], app, true);
    ok(installed, 'offline npm install of the tarball');
    const pkg = JSON.parse(readFileSync(join(app, 'node_modules/graft/package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    assert.ok(!('tsx' in pkg.dependencies), 'tsx is a dev dependency');
    assert.ok(!existsSync(join(app, 'node_modules/tsx')), 'tsx was installed for a consumer');
    const ortDownload = sh(
      'node',
      [join(app, 'node_modules/onnxruntime-node/script/install.js')],
      join(app, 'node_modules/onnxruntime-node'),
      true,
    );
    assert.notEqual(
      ortDownload.status,
      0,
      "without the skip, onnxruntime-node's install script should fail offline (it fetches CUDA libraries)",
    );

    // the command: compiled JavaScript from dist/, offline
    const help = sh('npx', ['--offline', 'graft', '--help'], app, true);
    ok(help, 'npx graft --help');
    assert.match(help.stdout, /Usage: graft/);
    assert.match(help.stdout, /train/);
    const check = sh(
      'npx',
      [
        '--offline',
        'graft',
        'check',
        join(app, 'node_modules/graft/examples/assets/models/onnxjs-demo/mnist.onnx'),
        '--params',
        '0',
      ],
      app,
      true,
    );
    ok(check, 'npx graft check');

    // the library: finetuneImageCsv imported by name from the installed package, on the bundled demo files
    writeFileSync(
      join(app, 'finetune.mjs'),
      [
        "import { finetuneImageCsv } from 'graft';",
        "const assets = new URL('./node_modules/graft/examples/assets/', import.meta.url).pathname;",
        "const r = await finetuneImageCsv(assets + 'models/onnxjs-demo/mnist.onnx', assets + 'datasets/digits-8x8/digits.csv.gz',",
        "  { labelsPerClass: 20, epochs: 4, batchSize: 32, lr: 3e-3, pixelMax: 16, seed: 0, out: 'out/model.onnx' });",
        'console.log(JSON.stringify({ before: r.zeroShotAccuracy, after: r.testAccuracy, out: r.out }));',
      ].join('\n'),
    );
    const run = sh('node', ['finetune.mjs'], app, true);
    ok(run, 'finetuneImageCsv from the consumer');
    const r = JSON.parse(run.stdout.trim().split('\n').pop()!) as { before: number; after: number; out: string };
    assert.ok(r.before > 0.5 && r.after > r.before, `accuracy ${r.before} → ${r.after}`);
    assert.ok(existsSync(join(app, 'out/model.onnx')));

    // an area's entry point: graft/finetune is the same module the root re-exports, and its one call
    // saves the classifier folder with its report
    writeFileSync(
      join(app, 'subpath.mjs'),
      [
        "import { trainImageClassifier } from 'graft/finetune';",
        "import { corpusBleu } from 'graft/text';",
        "import * as root from 'graft';",
        "if (root.trainImageClassifier !== trainImageClassifier || root.corpusBleu !== corpusBleu) throw new Error('graft/finetune or graft/text differs from the root export');",
        "const assets = new URL('./node_modules/graft/examples/assets/', import.meta.url).pathname;",
        "const r = await trainImageClassifier(assets + 'models/onnxjs-demo/mnist.onnx', assets + 'datasets/digits-8x8/digits.csv.gz',",
        "  { labelsPerClass: 10, epochs: 1, pixelMax: 16, out: 'out/clf' });",
        'console.log(JSON.stringify({ files: r.files }));',
      ].join('\n'),
    );
    const sub = sh('node', ['subpath.mjs'], app, true);
    ok(sub, 'graft/finetune from the consumer');
    const saved = (JSON.parse(sub.stdout.trim().split('\n').pop()!) as { files: string[] }).files.map((f) =>
      f.replace(/^.*\//, ''),
    );
    assert.deepEqual(saved.sort(), ['labels.json', 'model.onnx', 'report.html', 'report.json']);
    for (const f of saved) assert.ok(existsSync(join(app, 'out/clf', f)), f);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
