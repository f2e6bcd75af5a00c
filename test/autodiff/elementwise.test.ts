import { test } from 'node:test';
import { checkOp, awayFromZero, positive, F, I } from '../helpers/op-graph.js';

test('Add with broadcasting reduces the gradient to each input shape', () =>
  checkOp({
    op: 'Add',
    inputs: [
      { name: 'a', dims: [2, 3, 4] },
      { name: 'b', dims: [3, 1] },
    ],
  }));
test('Sub broadcast', () =>
  checkOp({
    op: 'Sub',
    inputs: [
      { name: 'a', dims: [4] },
      { name: 'b', dims: [2, 3, 4] },
    ],
  }));
test('Mul broadcast', () =>
  checkOp({
    op: 'Mul',
    inputs: [
      { name: 'a', dims: [2, 1, 4] },
      { name: 'b', dims: [3, 1] },
    ],
  }));
test('Div', () =>
  checkOp({
    op: 'Div',
    inputs: [
      { name: 'a', dims: [2, 3] },
      { name: 'b', dims: [3], init: positive },
    ],
  }));
test('Neg', () => checkOp({ op: 'Neg', inputs: [{ name: 'a', dims: [5] }] }));
test('Pow by a tensor exponent', () =>
  checkOp({
    op: 'Pow',
    inputs: [
      { name: 'a', dims: [2, 3], init: positive },
      { name: 'p', dims: [3], init: (r) => 0.5 + r.uniform() * 2 },
    ],
  }));
test('Sqrt', () => checkOp({ op: 'Sqrt', inputs: [{ name: 'a', dims: [6], init: positive }] }));
test('Exp', () => checkOp({ op: 'Exp', inputs: [{ name: 'a', dims: [6] }] }));
test('Log', () => checkOp({ op: 'Log', inputs: [{ name: 'a', dims: [6], init: positive }] }));
test('Abs', () => checkOp({ op: 'Abs', inputs: [{ name: 'a', dims: [6], init: awayFromZero }] }));
test('Reciprocal', () => checkOp({ op: 'Reciprocal', inputs: [{ name: 'a', dims: [6], init: positive }] }));
test('Sum of three with broadcast', () =>
  checkOp({
    op: 'Sum',
    inputs: [
      { name: 'a', dims: [2, 3] },
      { name: 'b', dims: [3] },
      { name: 'c', dims: [2, 1] },
    ],
  }));
test('Max of two', () =>
  checkOp({
    op: 'Max',
    inputs: [
      { name: 'a', dims: [8] },
      { name: 'b', dims: [8] },
    ],
  }));
test('Relu', () => checkOp({ op: 'Relu', inputs: [{ name: 'x', dims: [10], init: awayFromZero }] }));
test('LeakyRelu', () =>
  checkOp({ op: 'LeakyRelu', attrs: { alpha: F(0.1) }, inputs: [{ name: 'x', dims: [10], init: awayFromZero }] }));
test('Sigmoid', () => checkOp({ op: 'Sigmoid', inputs: [{ name: 'x', dims: [10] }] }));
test('Tanh', () => checkOp({ op: 'Tanh', inputs: [{ name: 'x', dims: [10] }] }));
test('Erf', () => checkOp({ op: 'Erf', inputs: [{ name: 'x', dims: [10] }] }));
test('Gelu (exact)', () => checkOp({ op: 'Gelu', opset: 20, inputs: [{ name: 'x', dims: [10] }] }));
test('HardSigmoid', () =>
  checkOp({ op: 'HardSigmoid', inputs: [{ name: 'x', dims: [12], init: (r) => r.normal() * 2 + 0.013 }] }));
test('HardSwish', () =>
  checkOp({ op: 'HardSwish', inputs: [{ name: 'x', dims: [12], init: (r) => r.normal() * 3 + 0.013 }] }));
test('Softmax on the last axis', () =>
  checkOp({ op: 'Softmax', attrs: { axis: I(-1) }, inputs: [{ name: 'x', dims: [2, 5] }] }));
test('Softmax on a middle axis', () =>
  checkOp({ op: 'Softmax', attrs: { axis: I(1) }, inputs: [{ name: 'x', dims: [2, 3, 4] }] }));
test('LogSoftmax', () => checkOp({ op: 'LogSoftmax', attrs: { axis: I(1) }, inputs: [{ name: 'x', dims: [3, 4] }] }));
test('MatMul 2-D', () =>
  checkOp({
    op: 'MatMul',
    inputs: [
      { name: 'a', dims: [3, 4] },
      { name: 'b', dims: [4, 5] },
    ],
  }));
test('MatMul batched with a shared weight', () =>
  checkOp({
    op: 'MatMul',
    inputs: [
      { name: 'a', dims: [2, 3, 4] },
      { name: 'b', dims: [4, 5] },
    ],
  }));
test('MatMul batched both', () =>
  checkOp({
    op: 'MatMul',
    inputs: [
      { name: 'a', dims: [2, 2, 3, 4] },
      { name: 'b', dims: [2, 1, 4, 5] },
    ],
  }));
test('MatMul vector @ matrix', () =>
  checkOp({
    op: 'MatMul',
    inputs: [
      { name: 'a', dims: [4] },
      { name: 'b', dims: [4, 5] },
    ],
  }));
test('Gemm transB with bias', () =>
  checkOp({
    op: 'Gemm',
    attrs: { transB: I(1), alpha: F(0.5), beta: F(2) },
    inputs: [
      { name: 'a', dims: [3, 4] },
      { name: 'w', dims: [5, 4] },
      { name: 'c', dims: [5] },
    ],
  }));
test('Gemm transA', () =>
  checkOp({
    op: 'Gemm',
    attrs: { transA: I(1) },
    inputs: [
      { name: 'a', dims: [4, 3] },
      { name: 'w', dims: [4, 5] },
      { name: 'c', dims: [3, 5] },
    ],
  }));
