/** A minimal TFLite flatbuffer writer for tests: small models built by hand, with the `flatbuffers` Builder. */
import { Builder } from 'flatbuffers';

export interface WTensor {
  name: string;
  shape: number[];
  /** TensorType (default FLOAT32 = 0). */
  type?: number;
  /** Constant data, little-endian bytes. */
  data?: Uint8Array;
  quant?: { scale: number[]; zeroPoint: number[]; dim?: number; detailsType?: number };
}

export type Field = ['byte' | 'int' | 'float' | 'bool', number, number];

export interface WOp {
  code: number;
  custom?: string;
  inputs: number[];
  outputs: number[];
  /** Builtin options: the union type and the fields (kind, id, value). */
  options?: { type: number; fields: Field[] };
}

export interface WModel {
  tensors: WTensor[];
  ops: WOp[];
  inputs: number[];
  outputs: number[];
}

export const f32 = (v: number[]) => new Uint8Array(Float32Array.from(v).buffer);
export const i32 = (v: number[]) => new Uint8Array(Int32Array.from(v).buffer);
export const u8 = (v: number[]) => Uint8Array.from(v);
export const i8 = (v: number[]) => new Uint8Array(Int8Array.from(v).buffer);

export function writeTflite(m: WModel): Uint8Array {
  const b = new Builder(1024);
  const ints = (v: number[]) => {
    b.startVector(4, v.length, 4);
    for (let i = v.length - 1; i >= 0; i--) b.addInt32(v[i]!);
    return b.endVector();
  };
  const offsets = (v: number[]) => {
    b.startVector(4, v.length, 4);
    for (let i = v.length - 1; i >= 0; i--) b.addOffset(v[i]!);
    return b.endVector();
  };
  // buffers: 0 is the empty sentinel, then one per constant tensor
  const bufferData: Uint8Array[] = [new Uint8Array(0)];
  const bufferOf = m.tensors.map((t) => (t.data ? bufferData.push(t.data) - 1 : 0));

  const tensors = m.tensors.map((t, ti) => {
    const name = b.createString(t.name);
    const shape = ints(t.shape);
    let quant = 0;
    if (t.quant) {
      b.startVector(4, t.quant.scale.length, 4);
      for (let i = t.quant.scale.length - 1; i >= 0; i--) b.addFloat32(t.quant.scale[i]!);
      const scale = b.endVector();
      b.startVector(8, t.quant.zeroPoint.length, 8);
      for (let i = t.quant.zeroPoint.length - 1; i >= 0; i--) b.addInt64(BigInt(t.quant.zeroPoint[i]!));
      const zp = b.endVector();
      b.startObject(7);
      b.addFieldOffset(2, scale, 0);
      b.addFieldOffset(3, zp, 0);
      if (t.quant.detailsType) b.addFieldInt8(4, t.quant.detailsType, 0);
      b.addFieldInt32(6, t.quant.dim ?? 0, 0);
      quant = b.endObject();
    }
    b.startObject(5);
    b.addFieldOffset(0, shape, 0);
    b.addFieldInt8(1, t.type ?? 0, 0);
    b.addFieldInt32(2, bufferOf[ti]!, 0);
    b.addFieldOffset(3, name, 0);
    if (quant) b.addFieldOffset(4, quant, 0);
    return b.endObject();
  });
  const tensorVec = offsets(tensors);

  const codes: { code: number; custom?: string }[] = [];
  const codeIndex = (op: WOp) => {
    let i = codes.findIndex((c) => c.code === op.code && c.custom === op.custom);
    if (i < 0) i = codes.push({ code: op.code, custom: op.custom }) - 1;
    return i;
  };
  const ops = m.ops.map((op) => {
    const ins = ints(op.inputs),
      outs = ints(op.outputs);
    let opts = 0;
    if (op.options) {
      b.startObject(Math.max(1, ...op.options.fields.map((f) => f[1] + 1)));
      for (const [kind, id, v] of op.options.fields) {
        if (kind === 'int') b.addFieldInt32(id, v, null);
        else if (kind === 'float') b.addFieldFloat32(id, v, null);
        else b.addFieldInt8(id, v, null);
      }
      opts = b.endObject();
    }
    const ci = codeIndex(op);
    b.startObject(5);
    b.addFieldInt32(0, ci, null);
    b.addFieldOffset(1, ins, 0);
    b.addFieldOffset(2, outs, 0);
    if (op.options) {
      b.addFieldInt8(3, op.options.type, 0);
      b.addFieldOffset(4, opts, 0);
    }
    return b.endObject();
  });
  const opVec = offsets(ops);
  const sgIn = ints(m.inputs),
    sgOut = ints(m.outputs),
    sgName = b.createString('main');
  b.startObject(5);
  b.addFieldOffset(0, tensorVec, 0);
  b.addFieldOffset(1, sgIn, 0);
  b.addFieldOffset(2, sgOut, 0);
  b.addFieldOffset(3, opVec, 0);
  b.addFieldOffset(4, sgName, 0);
  const subgraphs = offsets([b.endObject()]);

  const opcodes = offsets(
    codes.map((c) => {
      const custom = c.custom ? b.createString(c.custom) : 0;
      b.startObject(4);
      b.addFieldInt8(0, Math.min(c.code, 127), null);
      if (custom) b.addFieldOffset(1, custom, 0);
      b.addFieldInt32(2, 1, null);
      b.addFieldInt32(3, c.code, null);
      return b.endObject();
    }),
  );
  const buffers = offsets(
    bufferData.map((d) => {
      const data = d.length ? b.createByteVector(d) : 0;
      b.startObject(1);
      if (data) b.addFieldOffset(0, data, 0);
      return b.endObject();
    }),
  );
  const desc = b.createString('written by a Graft test');
  b.startObject(5);
  b.addFieldInt32(0, 3, null);
  b.addFieldOffset(1, opcodes, 0);
  b.addFieldOffset(2, subgraphs, 0);
  b.addFieldOffset(3, desc, 0);
  b.addFieldOffset(4, buffers, 0);
  b.finish(b.endObject(), 'TFL3');
  return b.asUint8Array().slice();
}

/**
 * A model whose reduction leaves a feature map in a mixed order: x[1,3,4,2] → MEAN(axis 1) → ADD k[2] →
 * SOFTMAX (last axis) → RESHAPE [1,8]. Used by the importer's axis test and as a fuzz seed.
 */
export function mixedOrderTflite(k: [number, number]): Uint8Array {
  return writeTflite({
    tensors: [
      { name: 'x', shape: [1, 3, 4, 2] },
      { name: 'axes', shape: [1], type: 2, data: i32([1]) },
      { name: 'm', shape: [1, 4, 2] },
      { name: 'k', shape: [2], data: f32(k) },
      { name: 'a', shape: [1, 4, 2] },
      { name: 'sm', shape: [1, 4, 2] },
      { name: 'shape', shape: [2], type: 2, data: i32([1, 8]) },
      { name: 'flat', shape: [1, 8] },
    ],
    ops: [
      { code: 40, inputs: [0, 1], outputs: [2], options: { type: 27, fields: [['bool', 0, 0]] } },
      { code: 0, inputs: [2, 3], outputs: [4] },
      { code: 25, inputs: [4], outputs: [5], options: { type: 9, fields: [['float', 0, 1]] } },
      { code: 22, inputs: [5, 6], outputs: [7] },
    ],
    inputs: [0],
    outputs: [7],
  });
}
