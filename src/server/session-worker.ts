/**
 * An onnxruntime session on its own thread. onnxruntime-node's `run` computes on the calling thread
 * (after a setImmediate): on the server's main thread it would stop HTTP, decoding and batching for the
 * length of every batch. `WorkerSession` (the main-thread side) starts this file as a worker thread,
 * which creates the session once from the model's bytes and answers run requests; input tensors
 * travel as transferred buffers, not copies.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

interface Init {
  bytes: Uint8Array;
  options: ort.InferenceSession.SessionOptions;
}

export interface WireTensor {
  type: ort.Tensor.Type;
  dims: number[];
  data: ort.Tensor.DataType;
}

export type WorkerRequest =
  | { id: number; feeds: Record<string, WireTensor>; outputs?: string[] }
  | { id: number; release: true };
export type WorkerReply = { id: number; outputs?: Record<string, WireTensor>; error?: string };

async function main(): Promise<void> {
  const port = parentPort!;
  const init = workerData as Init;
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(init.bytes, init.options);
  } catch (e) {
    port.postMessage({ id: 0, error: (e as Error).message } satisfies WorkerReply);
    return;
  }
  port.postMessage({ id: 0, outputs: {} } satisfies WorkerReply); // ready
  port.on('message', async (m: WorkerRequest) => {
    if ('release' in m) {
      await session.release();
      port.postMessage({ id: m.id } satisfies WorkerReply);
      port.close();
      return;
    }
    try {
      const feeds: Record<string, ort.Tensor> = {};
      for (const [k, t] of Object.entries(m.feeds)) feeds[k] = new ort.Tensor(t.type, t.data as never, t.dims);
      const res = m.outputs ? await session.run(feeds, m.outputs) : await session.run(feeds);
      // outputs are copied back (class scores: small); their memory may belong to onnxruntime
      const outputs: Record<string, WireTensor> = {};
      for (const [k, v] of Object.entries(res)) outputs[k] = { type: v.type, dims: [...v.dims], data: v.data };
      port.postMessage({ id: m.id, outputs } satisfies WorkerReply);
    } catch (e) {
      port.postMessage({ id: m.id, error: (e as Error).message } satisfies WorkerReply);
    }
  });
}

void main();
