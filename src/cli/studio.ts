/** `graft studio`: start Graft Studio (src/studio/app.ts) on loopback and print its URL. */
import { Command } from 'commander';
import { createStudio, defaultDataDir } from '../studio/app.js';
import { GraftError } from '../util/errors.js';

interface StudioFlags {
  port: string;
  host: string;
  data?: string;
  token?: string;
  concurrency: string;
}

export function studioCommand(): Command {
  return new Command('studio')
    .description(
      'start Graft Studio, a local web app: collect examples in classes, train, evaluate, try, explain and export classifiers',
    )
    .option('--port <n>', 'port to listen on (0: any free port)', '7860')
    .option('--host <addr>', 'address to listen on; anything but loopback needs --token', '127.0.0.1')
    .option('--data <dir>', 'data folder (projects database and files; default GRAFT_STUDIO_DIR or ~/.graft/studio)')
    .option('--token <t>', 'bearer token every request must carry (needed off loopback; or set GRAFT_STUDIO_TOKEN)')
    .option('--concurrency <n>', 'trainings at once', '1')
    .action(async (o: StudioFlags) => {
      const port = Number(o.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new GraftError(`--port must be a port number (0–65535), got '${o.port}'`);
      const concurrency = Number(o.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1)
        throw new GraftError(`--concurrency must be a positive integer, got '${o.concurrency}'`);
      const token = o.token ?? process.env['GRAFT_STUDIO_TOKEN'];
      const studio = await createStudio({
        dataDir: o.data ?? defaultDataDir(),
        host: o.host,
        ...(token ? { token } : {}),
        concurrency,
      });
      const address = await studio.app.listen({ host: o.host, port });
      const url = new URL(address);
      if (url.hostname === '127.0.0.1' || url.hostname === '[::1]')
        url.hostname = o.host === 'localhost' ? 'localhost' : url.hostname;
      process.stdout.write(
        `Graft Studio: ${url.origin}/${token ? `?token=${encodeURIComponent(token)}` : ''}\ndata: ${studio.dataDir}\n`,
      );
      let stopping = false;
      const stop = () => {
        if (stopping) return;
        stopping = true;
        void studio.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
}
