/**
 * Graft as a dependency, as a user gets it: `npm pack`, then the tarball installed into a fresh
 * project with no network (a network namespace of its own, `unshare -n`; packages come from npm's
 * cache, `--offline`). The consumer's .npmrc holds the documented CPU-only line, so onnxruntime-node's
 * install script skips its CUDA download (which would need NuGet). The installed `graft` command and
 * `import { finetuneImageCsv } from 'graft'` must then work, the latter on the demo files the package
 * bundles. Two things are not done twice: a dist/ that is already the build of the current sources (CI:
 * `npm ci` just ran prepare) is packed as it is, and better-sqlite3's native binary is handed to the
 * offline install as a local prebuild instead of SQLite being compiled again (see betterSqlitePrebuild).
 * Skipped, with the reason, where network namespaces are not permitted, except in CI (GRAFT_REQUIRE_ASSETS=1
 * or CI set), where that is a failure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
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

function sh(
  cmd: string,
  args: string[],
  cwd: string,
  offline = false,
  env: NodeJS.ProcessEnv = {},
): SpawnSyncReturns<string> {
  const [c, a] = offline ? ['unshare', ['-n', cmd, ...args]] : [cmd, args];
  return spawnSync(c, a, {
    cwd,
    env: { ...cleanEnv(), ...env },
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    timeout: 600_000,
  });
}

/** Every file under `dir` (recursively) whose name passes `keep`, with its modification time. */
function filesUnder(
  dir: string,
  keep: (name: string) => boolean,
  out = new Map<string, number>(),
): Map<string, number> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) filesUnder(p, keep, out);
    else if (keep(e.name)) out.set(p, statSync(p).mtimeMs);
  }
  return out;
}

/**
 * Whether dist/ is what the prepare script would build now: every source under src/ compiled to a
 * .js no older than it and than the build's configuration, and no compiled .js left from a source
 * that is gone. In CI it is (`npm ci` ran prepare on the clean clone), so `npm pack` need not build
 * it a second time; anywhere else a stale dist/ is rebuilt by npm pack's prepare as before.
 */
function distIsFresh(): boolean {
  const dist = join(projectRoot, 'dist');
  if (!existsSync(dist)) return false;
  const sources = filesUnder(join(projectRoot, 'src'), (n) => n.endsWith('.ts') && !n.endsWith('.d.ts'));
  const built = filesUnder(dist, (n) => n.endsWith('.js'));
  for (const p of [...built.keys()]) if (relative(dist, p).startsWith('studio-ui')) built.delete(p);
  const config = Math.max(
    ...['package.json', 'tsconfig.json', 'tsconfig.build.json'].map((f) => statSync(join(projectRoot, f)).mtimeMs),
  );
  if (built.size !== sources.size) return false;
  for (const [src, t] of sources) {
    const js = built.get(join(dist, relative(join(projectRoot, 'src'), src)).replace(/\.ts$/, '.js'));
    if (js === undefined || js < t || js < config) return false;
  }
  return true;
}

/**
 * better-sqlite3's native binary for the consumer's offline install: its install script
 * (prebuild-install) downloads a prebuilt binary from GitHub, which an offline install cannot reach,
 * and then compiles SQLite from source (a minute or more of CPU, a second time after the project's
 * own `npm ci`). prebuild-install's documented local-prebuilds setting hands it the binary the
 * project's install already has, packed as the prebuild it would have downloaded. Returns the
 * environment that points the install at it; empty (so SQLite is compiled) where there is no binary.
 */
function betterSqlitePrebuild(dir: string): NodeJS.ProcessEnv {
  const pkgDir = join(projectRoot, 'node_modules', 'better-sqlite3');
  const binary = join(pkgDir, 'build', 'Release', 'better_sqlite3.node');
  if (!existsSync(binary)) return {};
  const { version } = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string };
  const prebuilds = join(dir, 'prebuilds');
  mkdirSync(prebuilds, { recursive: true });
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  ok(
    spawnSync('tar', ['-czf', join(prebuilds, name), '-C', pkgDir, 'build/Release/better_sqlite3.node'], {
      encoding: 'utf8',
    }),
    'tar of better-sqlite3',
  );
  return { npm_config_better_sqlite3_local_prebuilds: prebuilds };
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
    // pack: the prepare script builds dist/ from src/ first, unless dist/ is already that build
    const fresh = distIsFresh();
    if (fresh) ok(sh('node', [join(projectRoot, 'scripts', 'build-ui.mjs')], projectRoot), 'the Studio UI build');
    const packed = sh(
      'npm',
      ['pack', '--pack-destination', dir, '--json', ...(fresh ? ['--ignore-scripts'] : [])],
      projectRoot,
    );
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
    const installed = sh(
      'npm',
      ['install', '--offline', '--no-audit', '--no-fund'],
      app,
      true,
      betterSqlitePrebuild(dir),
    );
    ok(installed, 'offline npm install of the tarball');
    const pkg = JSON.parse(readFileSync(join(app, 'node_modules/graft/package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    assert.ok(!('tsx' in pkg.dependencies), 'tsx is a dev dependency');
    assert.ok(!existsSync(join(app, 'node_modules/tsx')), 'tsx was installed for a consumer');
    assert.ok(
      existsSync(join(app, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node')),
      "better-sqlite3's native binary was installed",
    );
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
