"""PyTorch peer of bench/finetune.ts: the same MobileNetV2 (the ONNX graph Graft imported from the
Coral TFLite file, run op by op with torch functions and the same weights), the same Fashion-MNIST
images (28x28 grey -> 224x224 RGB with PIL's Lanczos resize, (x/255 - 0.5)/0.5), the same new head
(zeros), AdamW, batch size, learning rate and cosine schedule; the straightforward loop: every step
runs the full forward pass (the frozen bottom under requires_grad=False), every epoch re-prepares
the images, validation after every epoch.

usage: finetune_torch.py SPEC.json  -> prints one JSON line with per-epoch times and accuracies and
the process's peak RSS. SPEC: model (onnx path), fashion (folder), train/val (indices into the
train / t10k files), cut, feature, mode ('top' or 'full'), epochs, batch, lr, weight_decay, threads.
"""
import gzip, json, math, resource, sys, time

import numpy as np
import onnx
from onnx import numpy_helper
from PIL import Image
import torch
import torch.nn.functional as F


def read_idx(path):
    with gzip.open(path, 'rb') as f:
        data = f.read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(nd)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def prepare(images):
    """28x28 uint8 -> [n, 3, 224, 224] float32, as Graft's preprocessing (stretch, Lanczos, mean/std 0.5)."""
    out = np.empty((len(images), 3, 224, 224), dtype=np.float32)
    for i, im in enumerate(images):
        big = np.asarray(Image.fromarray(im, mode='L').resize((224, 224), Image.LANCZOS), dtype=np.float32)
        out[i, :] = (big / 255.0 - 0.5) / 0.5
    return torch.from_numpy(out)


class OnnxNet(torch.nn.Module):
    """The ops of the imported MobileNetV2 graph (Conv, Clip, Add, ReduceMean, ...) up to the feature node, then a new Linear head."""

    def __init__(self, path, cut, feature, classes, mode):
        super().__init__()
        m = onnx.load(path)
        g = m.graph
        inits = {t.name: numpy_helper.to_array(t).copy() for t in g.initializer}
        self.input = g.input[0].name
        self.nodes = []
        self.params = torch.nn.ParameterDict()
        self.consts = {}
        self.pname = {}
        after = False
        produced_after = set()
        for n in g.node:
            if n.op_type == 'Constant':
                self.consts[n.output[0]] = torch.from_numpy(numpy_helper.to_array(n.attribute[0].t).copy())
                continue
            trainable = mode == 'full' or any(i in produced_after or i == cut for i in n.input)
            if trainable and mode != 'full':
                produced_after.update(n.output)
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            for i in n.input:
                if i in inits and i not in self.pname:
                    t = torch.from_numpy(inits[i])
                    if t.dtype == torch.float32 and n.op_type in ('Conv', 'Gemm', 'MatMul') and i != n.input[0]:
                        key = 'p%d' % len(self.pname)
                        self.params[key] = torch.nn.Parameter(t, requires_grad=trainable)
                        self.pname[i] = key
                    else:
                        self.consts[i] = t
            self.nodes.append((n.op_type, list(n.input), list(n.output), attrs))
            if feature in n.output:
                break
        self.feature = feature
        dim = int(inits[[i for i in inits if inits[i].ndim == 4 and inits[i].shape[0] == 1001][0]].shape[1])
        self.head = torch.nn.Linear(dim, classes)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def value(self, env, name):
        if name in env:
            return env[name]
        if name in self.pname:
            return self.params[self.pname[name]]
        return self.consts[name]

    def forward(self, x):
        env = {self.input: x}
        for op, ins, outs, a in self.nodes:
            v = [self.value(env, i) if i else None for i in ins]
            if op == 'Conv':
                pads = a.get('pads', [0, 0, 0, 0])
                h0, w0, h1, w1 = pads
                y = v[0]
                if h0 == h1 and w0 == w1:
                    pad = (h0, w0)
                else:
                    y = F.pad(y, (w0, w1, h0, h1))
                    pad = (0, 0)
                y = F.conv2d(y, v[1], v[2] if len(v) > 2 else None, stride=tuple(a.get('strides', [1, 1])), padding=pad,
                             dilation=tuple(a.get('dilations', [1, 1])), groups=a.get('group', 1))
            elif op == 'Clip':
                y = torch.clamp(v[0], float(v[1]), float(v[2]))
            elif op == 'Add':
                y = v[0] + v[1]
            elif op == 'ReduceMean':
                axes = a.get('axes') or [int(t) for t in v[1]]
                y = v[0].mean(dim=axes, keepdim=bool(a.get('keepdims', 1)))
            elif op == 'Reshape':
                y = v[0].reshape([int(t) for t in v[1]])
            else:
                raise RuntimeError('op %s not handled' % op)
            env[outs[0]] = y
        return self.head(torch.flatten(env[self.feature], 1))


def main():
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(spec['threads'])
    torch.manual_seed(0)
    rng = np.random.default_rng(spec.get('seed', 0))
    t_start = time.perf_counter()
    tr_images = read_idx(spec['fashion'] + '/train-images-idx3-ubyte.gz')
    tr_labels = read_idx(spec['fashion'] + '/train-labels-idx1-ubyte.gz')
    te_images = read_idx(spec['fashion'] + '/t10k-images-idx3-ubyte.gz')
    te_labels = read_idx(spec['fashion'] + '/t10k-labels-idx1-ubyte.gz')
    xtr = tr_images[spec['train']]
    ytr = torch.from_numpy(tr_labels[spec['train']].astype(np.int64))
    xva = te_images[spec['val']]
    yva = torch.from_numpy(te_labels[spec['val']].astype(np.int64))
    net = OnnxNet(spec['model'], spec['cut'], spec['feature'], 10, spec['mode'])
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec['lr'], weight_decay=spec['weight_decay'])
    bs = spec['batch']
    epochs = spec['epochs']
    steps_per_epoch = math.ceil(len(xtr) / bs)
    total = epochs * steps_per_epoch
    step = 0
    log = []
    for epoch in range(1, epochs + 1):
        net.train()
        order = rng.permutation(len(xtr))
        loss_sum = 0.0
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            x = prepare(xtr[idx])
            for gr in opt.param_groups:
                gr['lr'] = spec['lr'] * 0.5 * (1 + math.cos(math.pi * step / total))
            opt.zero_grad()
            loss = F.cross_entropy(net(x), ytr[idx])
            loss.backward()
            opt.step()
            loss_sum += float(loss)
            step += 1
        net.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(xva), 64):
                correct += int((net(prepare(xva[i:i + 64])).argmax(1) == yva[i:i + 64]).sum())
        log.append({'epoch': epoch, 'seconds': time.perf_counter() - t_start, 'loss': loss_sum / steps_per_epoch, 'val_accuracy': correct / len(xva)})
        print(json.dumps(log[-1]), file=sys.stderr, flush=True)
    print(json.dumps({'epochs': log, 'trainable': sum(p.numel() for p in params),
                      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == '__main__':
    main()
