#!/usr/bin/python3
"""
Export torchvision's model zoo to ONNX and compute PyTorch's reference gradients, for bench/zoo-parity.ts.

    /usr/bin/python3 bench/zoo_export.py --out .graft-cache/zoo [--models resnet18,vit_tiny] [--threads 2]

Needs torch, torchvision and onnx (Debian: python3-torch, python3-torchvision, python3-onnx); no network:
every model is built with weights=None from a fixed seed. For each model NAME it writes to --out:

  NAME.onnx            the model, exported in eval mode (see export() for the settings)
  NAME.feed.safetensors     x (the input), R (float32, the output's shape), labels (int64 [batch])
  NAME.ref-ws.safetensors   PyTorch's gradients of L = sum(model(x) * R), keyed by ONNX initializer name
  NAME.ref-ce.safetensors   PyTorch's gradients of L = cross_entropy(model(x), labels) (mean over the batch)
  NAME.json            the parameter mapping (ONNX initializer -> PyTorch parameter), losses, shapes, timings

plus manifest.json listing every model, and bn-folding.json (what the exporter does to BatchNormalization).
The gradients are taken in eval mode: BatchNormalization uses its running statistics, dropout is off.
"""
import argparse
import collections
import copy
import hashlib
import json
import math
import os
import struct
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn.functional as F
import torchvision
from torchvision import models

OPSET = 17
BATCH = 2
SEED = 0


def vit_tiny():
    # Same operator structure as vit_b_16 (conv patch embedding, class token, position embedding,
    # nn.MultiheadAttention encoder blocks with LayerNorm and GELU MLP, linear head), much smaller.
    return models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128)


# name -> (constructor, input side, opset). Inputs are small where the architecture allows; VGG needs 224
# because its AdaptiveAvgPool2d((7, 7)) only exports when the feature map (input / 32) is a multiple of 7.
MODELS = {
    'mobilenet_v2': (lambda: models.mobilenet_v2(weights=None), 64, OPSET),
    'mobilenet_v3_small': (lambda: models.mobilenet_v3_small(weights=None), 64, OPSET),
    'mobilenet_v3_large': (lambda: models.mobilenet_v3_large(weights=None), 64, OPSET),
    'resnet18': (lambda: models.resnet18(weights=None), 64, OPSET),
    'resnet50': (lambda: models.resnet50(weights=None), 64, OPSET),
    'vgg11': (lambda: models.vgg11(weights=None), 224, OPSET),
    'vgg16': (lambda: models.vgg16(weights=None), 224, OPSET),
    'inception_v3': (lambda: models.inception_v3(weights=None, aux_logits=False, init_weights=True), 80, OPSET),
    'vit_tiny': (vit_tiny, 32, OPSET),
    # The same ViT at opset 14, where LayerNormalization does not exist yet: the exporter decomposes it.
    'vit_tiny_opset14': (vit_tiny, 32, 14),
}
# Variants whose ONNX file is post-processed by fold_slice_bounds (a workaround, see there).
FOLD_SLICES = {'vit_tiny_sliceconst': 'vit_tiny'}

ST_DTYPES = {np.dtype('float32'): 'F32', np.dtype('int64'): 'I64', np.dtype('float64'): 'F64'}


def write_safetensors(path, tensors, metadata=None):
    """safetensors by hand: 8-byte little-endian header length, JSON header, raw little-endian data."""
    header, chunks, off = {}, [], 0
    if metadata:
        header['__metadata__'] = {k: str(v) for k, v in metadata.items()}
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        b = a.astype(a.dtype.newbyteorder('<'), copy=False).tobytes()
        header[name] = {'dtype': ST_DTYPES[a.dtype], 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    raw = json.dumps(header, separators=(',', ':')).encode()
    raw += b' ' * ((8 - len(raw) % 8) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(raw)))
        f.write(raw)
        for c in chunks:
            f.write(c)
    os.replace(tmp, path)


def export(model, x, path, opset, training=torch.onnx.TrainingMode.PRESERVE, fold=False):
    """
    torch 1.13's exporter, for TrainingMode.EVAL (its default), runs an eval "peephole" pass that fuses each
    Conv + BatchNormalization pair into one Conv with new, renamed weights (onnx::Conv_NNN), whatever
    do_constant_folding says. TrainingMode.PRESERVE on a model in eval mode skips that pass: BatchNormalization
    stays in the graph (training_mode=0, running statistics) and every initializer keeps its PyTorch name.
    do_constant_folding=False keeps weight Transposes (nn.Linear on 3-D inputs) as nodes on the named weight.
    """
    torch.onnx.export(
        model, (x,), path, opset_version=opset, input_names=['x'], output_names=['y'],
        training=training, do_constant_folding=fold, export_params=True, keep_initializers_as_inputs=False,
    )


def bn_folding_report(out_dir):
    """What the export settings do to BatchNormalization, on resnet18 (20 BatchNorm2d modules)."""
    torch.manual_seed(SEED)
    m = models.resnet18(weights=None).eval()
    redraw_constants(m, SEED + 2)
    x = torch.randn(BATCH, 3, 64, 64)
    rows = []
    for label, training, fold in [
        ('training=EVAL (default), do_constant_folding=True (default)', torch.onnx.TrainingMode.EVAL, True),
        ('training=EVAL, do_constant_folding=False', torch.onnx.TrainingMode.EVAL, False),
        ('training=PRESERVE (model.eval()), do_constant_folding=False [used]', torch.onnx.TrainingMode.PRESERVE, False),
    ]:
        p = os.path.join(out_dir, '_bn_probe.onnx')
        export(m, x, p, OPSET, training, fold)
        g = onnx.load(p).graph
        inits = [i.name for i in g.initializer]
        rows.append({
            'settings': label,
            'BatchNormalization': sum(n.op_type == 'BatchNormalization' for n in g.node),
            'Conv': sum(n.op_type == 'Conv' for n in g.node),
            'initializers': len(inits),
            'renamed initializers': sum(not n.startswith(('conv', 'bn', 'layer', 'fc', 'downsample')) for n in inits),
            'example initializers': inits[:3],
        })
        os.remove(p)
    with open(os.path.join(out_dir, 'bn-folding.json'), 'w') as f:
        json.dump(rows, f, indent=1)
    return rows


def match_params(model, onnx_path):
    """
    ONNX initializer -> PyTorch parameter. With the export settings above, torch keeps parameter names, so
    most match by name. Any other float initializer is matched by value: a parameter of the same shape with
    bit-identical data (or, for 2-D, whose transpose is bit-identical). Returns (mapping, unmatched).
    """
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    by_hash = {}
    for n, p in params.items():
        a = p.detach().numpy()
        by_hash.setdefault((a.shape, hashlib.sha1(a.tobytes()).hexdigest()), []).append((n, 'none'))
        if a.ndim == 2:
            t = np.ascontiguousarray(a.T)
            by_hash.setdefault((t.shape, hashlib.sha1(t.tobytes()).hexdigest()), []).append((n, 'transpose'))
    g = onnx.load(onnx_path).graph
    mapping, unmatched = {}, []
    for init in g.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or init.name in buffers:
            continue
        if init.name in params:
            mapping[init.name] = {'torch': init.name, 'how': 'name', 'transform': 'none'}
            continue
        a = numpy_helper.to_array(init)
        hits = by_hash.get((a.shape, hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()), [])
        if len(hits) == 1:
            mapping[init.name] = {'torch': hits[0][0], 'how': 'value', 'transform': hits[0][1]}
        elif a.size > 1:
            unmatched.append({'name': init.name, 'shape': list(a.shape), 'candidates': [h[0] for h in hits]})
    return mapping, unmatched


def reference_grads(model, x, mapping, loss_fns):
    """
    {kind: (loss, gradients)} for each kind -> loss_fn(model(x)) in loss_fns, from one forward pass: gradients of
    every mapped ONNX initializer (float32 numpy, ONNX layout).
    """
    params = dict(model.named_parameters())
    y = model(x)
    out = {}
    kinds = list(loss_fns)
    for i, kind in enumerate(kinds):
        model.zero_grad(set_to_none=True)
        loss = loss_fns[kind](y)
        loss.backward(retain_graph=i < len(kinds) - 1)
        grads = {}
        for onnx_name, m in mapping.items():
            gr = params[m['torch']].grad
            if gr is None:
                gr = torch.zeros_like(params[m['torch']])
            a = gr.detach().numpy().astype(np.float32)
            grads[onnx_name] = np.ascontiguousarray(a.T) if m['transform'] == 'transpose' else a
        out[kind] = (float(loss.detach()), grads)
    model.zero_grad(set_to_none=True)
    return out


KINK_REL = 1e-6
# where each activation module's derivative jumps
KINK_POINTS = {torch.nn.ReLU: (0.0,), torch.nn.ReLU6: (0.0, 6.0), torch.nn.Hardswish: (-3.0, 3.0), torch.nn.Hardsigmoid: (-3.0, 3.0)}


def kink_sites(model):
    """
    Where a float32 rounding can flip a piecewise-linear decision: the output of every Conv2d / Linear /
    BatchNorm2d (the input of a functional F.relu, as in inception_v3; kink at 0), and the input of every
    activation module call ('name#k' for its k-th call: ResNet reuses one ReLU three times per block, the last
    after the residual Add). Yields (key, module, kind, kink points).
    """
    for n, m in model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)):
            yield n, m, 'output', (0.0,)
        for t, pts in KINK_POINTS.items():
            if type(m) is t:
                yield n, m, 'input', pts


def attach(model, fn):
    """Call fn(key, tensor, kink points) on every kink site's tensor; fn may return a replacement tensor."""
    hooks, counters = [], []

    def reset(_m, _a):
        for c in counters:
            c[0] = 0
    hooks.append(model.register_forward_pre_hook(reset))  # call numbers count within one forward pass
    for n, m, kind, pts in kink_sites(model):
        if kind == 'output':
            hooks.append(m.register_forward_hook(lambda _m, _i, out, n=n, pts=pts: fn(n, out, pts)))
        else:
            calls = [0]
            counters.append(calls)

            def pre(_m, args, n=n, pts=pts, calls=calls):
                key = f'{n}#{calls[0]}'
                calls[0] += 1
                r = fn(key, args[0], pts)
                return None if r is None else (r,) + tuple(args[1:])
            hooks.append(m.register_forward_pre_hook(pre))
    return hooks


def record_kinks(model):
    """
    Hooks that record, during the next forward pass (float64), for each kink site (see kink_sites) the channels
    holding a value within KINK_REL of a kink point, relative to the site's largest magnitude: where a float32
    computation can take the other branch. Returns ({key: {'channels': C, 'near': [[channel, |v − k| / max|v|]]}},
    hooks); remove the hooks after the pass.
    """
    found = {}

    def f(key, out, pts):
        v = out.detach()
        if v.ndim < 2:
            return None
        scale = v.abs().max().clamp_min(1e-300)
        dist = torch.stack([(v - k).abs() for k in pts]).min(0).values
        per = dist.transpose(0, 1).reshape(v.shape[1], -1).min(1).values / scale
        idx = torch.nonzero(per < KINK_REL).flatten().tolist()
        if idx:
            found[key] = {'channels': int(v.shape[1]), 'near': [[int(c), float(per[c])] for c in idx]}
        return None
    return found, attach(model, f)


SHAPE_OPS = {'Constant', 'Shape', 'Gather', 'Add', 'Sub', 'Mul', 'Div', 'Unsqueeze', 'Squeeze', 'Concat', 'Cast', 'Slice'}


def fold_slice_bounds(path):
    """
    Workaround for Graft's Slice rule, which needs constant starts/ends/axes/steps: evaluate the integer shape
    arithmetic (Shape of a statically shaped value -> Gather/Add/Div/Mul/...) that feeds Slice bounds, replace
    those bounds with initializers, drop the nodes nothing uses any more. nn.MultiheadAttention's packed
    in-projection (`linear(x, in_proj_weight).chunk(3, -1)`) exports its three Slices in this form.
    Returns the number of Slice inputs replaced.
    """
    m = onnx.shape_inference.infer_shapes(onnx.load(path), data_prop=True)
    g = m.graph
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        dims = [d.dim_value if d.HasField('dim_value') else None for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for i in g.initializer:
        shapes[i.name] = list(i.dims)
    known = {i.name: numpy_helper.to_array(i) for i in g.initializer if i.data_type == onnx.TensorProto.INT64}
    const_names = set(known)
    for n in g.node:
        if n.op_type not in SHAPE_OPS:
            continue
        at = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        ins = [known.get(i) if i else None for i in n.input]
        v = None
        if n.op_type == 'Constant' and 'value' in at:
            t = numpy_helper.to_array(at['value'])
            if t.dtype.kind == 'i':
                v = t
                const_names.add(n.output[0])
        elif n.op_type == 'Shape':
            dims = shapes.get(n.input[0])
            if dims and all(d for d in dims):
                v = np.array(dims, dtype=np.int64)[at.get('start', 0):at.get('end', len(dims))]
        elif all(x is not None for x in ins):
            op = n.op_type
            if op == 'Gather':
                v = np.take(ins[0], ins[1], axis=at.get('axis', 0))
            elif op in ('Add', 'Sub', 'Mul'):
                v = {'Add': np.add, 'Sub': np.subtract, 'Mul': np.multiply}[op](ins[0], ins[1])
            elif op == 'Div':
                v = np.trunc(ins[0] / ins[1]).astype(ins[0].dtype)
            elif op == 'Unsqueeze':
                v = np.expand_dims(ins[0], tuple(int(a) for a in ins[1]))
            elif op == 'Squeeze':
                v = np.squeeze(ins[0], tuple(int(a) for a in ins[1])) if len(ins) > 1 else np.squeeze(ins[0])
            elif op == 'Concat':
                v = np.concatenate(ins, axis=at['axis'])
            elif op == 'Cast' and at['to'] == onnx.TensorProto.INT64:
                v = ins[0].astype(np.int64)
        if v is not None and n.op_type != 'Slice':
            known[n.output[0]] = np.asarray(v)
    replaced = 0
    for n in g.node:
        if n.op_type != 'Slice':
            continue
        for k in range(1, len(n.input)):
            name = n.input[k]
            if name and name not in const_names and name in known:
                new = f'{name}__folded'
                if new not in {i.name for i in g.initializer}:
                    g.initializer.append(numpy_helper.from_array(known[name].astype(np.int64), new))
                n.input[k] = new
                replaced += 1
    # drop nodes whose outputs nothing reads
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    del g.value_info[:]
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return replaced


def redraw_constants(model, seed):
    """
    Re-draw every float parameter or buffer that its initializer set to a constant: BatchNorm/LayerNorm
    weights (1) and biases (0), running means (0) and variances (1), zero-initialised biases, ViT's class
    token and zero-initialised head. Two reasons. torch's exporter deduplicates initializers with identical
    values (all the ones-vectors of one length become one initializer feeding Identity nodes, BN weights and
    running variances alike), which would merge distinct PyTorch parameters into one ONNX parameter. And
    constant values hide bugs: BN with mean 0 / var 1 / scale 1 is nearly the identity, a zero head gives
    every earlier layer a zero weighted-sum gradient. Ones become U(0.75, 1.25) (variances stay positive),
    zeros N(0, 0.05^2), other constants c·U(0.75, 1.25). Returns the names re-drawn.
    """
    g = torch.Generator().manual_seed(seed)
    redrawn = []
    with torch.no_grad():
        for n, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point() or t.numel() < 2 or t.min() != t.max():
                continue
            c = float(t.flatten()[0])
            if c == 0:
                t.copy_(torch.randn(t.shape, generator=g) * 0.05)
            else:
                t.copy_(c * (0.75 + 0.5 * torch.rand(t.shape, generator=g)))
            redrawn.append(n)
    return redrawn


def calibrate_bn(model, side, seed):
    """
    Set every BatchNorm's running statistics to the statistics of its actual input (cumulative average over two
    random batches of 8, in train mode), as a trained network's are. Left at their initial values (or random
    ones), eval-mode BatchNorm does not normalise, and the random network's activations explode or vanish with
    depth (inception_v3's outputs reach 1e8, mobilenet_v2's first-layer gradients fall below 1e-12 of its
    last): gradients then cannot be compared. Returns the number of BatchNorm modules.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, side, side, generator=g))
    model.eval()
    for m in bns:
        m.momentum = 0.1
    return len(bns)


def build_model(name):
    """The model as exported and differentiated: seeded init, constants re-drawn, BatchNorm calibrated, eval mode."""
    ctor, side, opset = MODELS[FOLD_SLICES.get(name, name)]
    torch.manual_seed(SEED)
    model = ctor().eval()
    redrawn = redraw_constants(model, SEED + 2)
    calibrated = calibrate_bn(model, side, SEED + 4)
    return model, side, opset, redrawn, calibrated


def confirm_flips(name, out_dir, kinds, rounds=8, tol=1e-3, tries=6):
    """
    Explain Graft-vs-float64 differences above tol as flipped piecewise-linear decisions, and prove it: re-run
    the float64 reference with those decisions flipped and compare Graft's gradients (NAME.graft-KIND.safetensors)
    again. A flip at (site, channel) takes the element of that channel nearest a kink and reflects it across the
    kink (v -> 2k - v; |v - k| ~ 1e-7 of the scale, so no forward value moves, but the activation takes the other
    branch). Each round takes the parameter nearest the output whose difference exceeds tol and sits in one or
    two output channels (each ≥ 1/4 of the largest), tries the kink sites listing all those channels as near
    (NAME.kinks.json, same channel count, nearest in module order first), keeps the first flip that removes that
    difference, and repeats. Returns the flips kept and, per loss, the worst difference left.
    """
    model, *_ = build_model(name)
    model = model.double()
    feed = read_safetensors(os.path.join(out_dir, f'{name}.feed.safetensors'))
    x, R, labels = (torch.from_numpy(feed[k]) for k in ('x', 'R', 'labels'))
    x, R = x.double(), R.double()
    kinks = json.load(open(os.path.join(out_dir, f'{name}.kinks.json')))
    info = json.load(open(os.path.join(out_dir, f'{name}.json')))
    order = list(info['mapping'])
    mod_order = {n: i for i, n in enumerate(dict(model.named_modules()))}
    got = {k: read_safetensors(os.path.join(out_dir, f'{name}.graft-{k}.safetensors')) for k in kinds}
    flips = []  # {'site', 'channel', ...}

    def flip_fn(key, out, pts):
        mine = [f for f in flips if f['site'] == key]
        if not mine:
            return None
        out = out.clone()
        scale = float(out.detach().abs().max())
        for f in mine:
            v = out.detach()[:, f['channel']]
            dist = torch.stack([(v - k).abs() for k in pts])
            flat = int(dist.min(0).values.argmin())
            i = np.unravel_index(flat, v.shape)
            pos = (int(i[0]), f['channel']) + tuple(int(j) for j in i[1:])
            val = float(out[pos])
            k = min(pts, key=lambda p: abs(val - p))
            with torch.no_grad():
                out[pos] = 2 * k - val
            f.update(position=list(pos), kink=k, distance_over_scale=abs(val - k) / scale)
        return out

    hooks = attach(model, flip_fn)

    def compare(kind, grads):
        rows = []
        for onnx_name in order:
            g = grads[onnx_name]
            s = float(np.abs(g).max())
            if s == 0 or onnx_name not in got[kind]:
                continue
            d = np.abs(got[kind][onnx_name] - g)
            per = d.reshape(d.shape[0], -1).max(1) / s if d.ndim > 1 else np.array([d.max() / s])
            rows.append((onnx_name, float(per.max()), per))
        return rows

    fns = {'ws': lambda y: (y * R).sum(), 'ce': lambda y: F.cross_entropy(y, labels)}

    def diffs_all():  # one float64 forward pass with the current flips, a backward pass per loss
        refs = reference_grads(model, x, info['mapping'], {k: fns[k] for k in kinds})
        return {k: compare(k, refs[k][1]) for k in kinds}

    result = {'flips': flips, 'losses': {}, 'tried': 0}
    # no flips yet: the float64 gradients written at export time
    rows = {k: compare(k, read_safetensors(os.path.join(out_dir, f'{name}.ref64-{k}.safetensors'))) for k in kinds}
    for _ in range(rounds):
        bad = [r for r in rows[kinds[0]] if r[1] > tol]
        if not bad:
            break
        target = None
        for pname, worst, per in reversed(bad):
            top = np.argsort(-per)[:3]
            lead = [int(c) for c in top if per[c] * 4 >= per[top[0]]]
            if len(per) >= 8 and len(lead) <= 2:
                target = (pname, lead, len(per), worst)
                break
        if not target:
            break
        pname, lead, channels, before = target
        home = mod_order.get(params_module(info, pname), 0)
        cands = [key for key, k in kinks.items()
                 if k['channels'] == channels and all(c in {n for n, _ in k['near']} for c in lead)
                 and not any(f['site'] == key and f['channel'] in lead for f in flips)]
        cands.sort(key=lambda key: abs(mod_order.get(key.split('#')[0], 0) - home))
        kept = False
        for key in cands[:tries]:
            trial = [{'site': key, 'channel': c} for c in lead]
            flips.extend(trial)
            result['tried'] += 1
            new_rows = diffs_all()
            after = dict((r[0], r[1]) for r in new_rows[kinds[0]])[pname]
            if after < min(tol, before / 10):
                rows, kept = new_rows, True
                break
            del flips[-len(trial):]
        if not kept:
            break
    for kind in kinds:
        w = max(rows[kind], key=lambda t: t[1]) if rows[kind] else ('', 0.0, None)
        result['losses'][kind] = {'worst': w[1], 'param': w[0]}
    for h in hooks:
        h.remove()
    return result


def params_module(info, onnx_name):
    return info['mapping'][onnx_name]['torch'].rsplit('.', 1)[0]


def run_model(name, out_dir):
    t0 = time.time()
    model, side, opset, redrawn, calibrated = build_model(name)
    gen = torch.Generator().manual_seed(SEED + 1)
    x = torch.randn(BATCH, 3, side, side, generator=gen)
    onnx_path = os.path.join(out_dir, f'{name}.onnx')
    export(model, x, onnx_path, opset)
    folded = fold_slice_bounds(onnx_path) if name in FOLD_SLICES else None
    t_export = time.time() - t0
    mapping, unmatched = match_params(model, onnx_path)
    with torch.no_grad():
        y = model(x)
    R = torch.randn(y.shape, generator=gen)
    labels = torch.randint(0, y.shape[1], (BATCH,), generator=gen, dtype=torch.int64)
    write_safetensors(os.path.join(out_dir, f'{name}.feed.safetensors'),
                      {'x': x.numpy(), 'R': R.numpy(), 'labels': labels.numpy()})
    t1 = time.time()
    losses = {}
    # float32: PyTorch as users run it. float64 (same parameters and inputs, converted exactly): a reference
    # without float32 rounding, so float32 ReLU/max-pool decisions flipped by rounding show up as the
    # float32 result's own error instead of as a Graft-vs-PyTorch difference.
    for prec, mdl, xx, RR in [('32', model, x, R), ('64', copy.deepcopy(model).double(), x.double(), R.double())]:
        kinks, hooks = record_kinks(mdl) if prec == '64' else ({}, [])
        refs = reference_grads(mdl, xx, mapping, {'ws': lambda y: (y * RR).sum(), 'ce': lambda y: F.cross_entropy(y, labels)})
        for h in hooks:
            h.remove()
        if prec == '64':
            with open(os.path.join(out_dir, f'{name}.kinks.json'), 'w') as f:
                json.dump(kinks, f, indent=1)
        for kind, (loss, grads) in refs.items():
            losses[f'{kind}{prec}'] = loss
            write_safetensors(os.path.join(out_dir, f'{name}.ref{"64" if prec == "64" else ""}-{kind}.safetensors'),
                              grads, {'loss': repr(loss), 'precision': 'float' + prec})
        del mdl
    ws_loss, ce_loss = losses['ws32'], losses['ce32']
    loss_scale = {'weighted-sum': float((y.double() * R.double()).abs().sum()), 'cross-entropy': abs(ce_loss)}
    t_grad = time.time() - t1
    used = {m['torch'] for m in mapping.values()}
    info = {
        'name': name, 'onnx': f'{name}.onnx', 'opset': opset, 'input': list(x.shape), 'output': list(y.shape),
        'torch_parameters': sum(1 for _ in model.parameters()),
        'torch_parameters_not_in_onnx': [n for n, _ in model.named_parameters() if n not in used],
        'redrawn_constants': redrawn, 'batchnorm_calibrated': calibrated, 'mapping': mapping, 'unmatched_float_initializers': unmatched,
        'onnx_ops': dict(collections.Counter(n.op_type for n in onnx.load(onnx_path, load_external_data=False).graph.node)),
        'losses': {'weighted-sum': ws_loss, 'cross-entropy': ce_loss,
                   'weighted-sum float64': losses['ws64'], 'cross-entropy float64': losses['ce64']},
        'slice_inputs_folded': folded, 'loss_scale': loss_scale,
        'seconds': {'export': round(t_export, 2), 'torch_grads': round(t_grad, 2)},
    }
    with open(os.path.join(out_dir, f'{name}.json'), 'w') as f:
        json.dump(info, f, indent=1)
    by_how = {}
    for m in mapping.values():
        by_how[m['how']] = by_how.get(m['how'], 0) + 1
    print(f'{name}: input {list(x.shape)} -> {list(y.shape)}, {len(redrawn)} constant tensors re-drawn, '
          f'{len(mapping)}/{info["torch_parameters"]} parameters mapped {by_how}, '
          f'{len(unmatched)} unmatched, export {t_export:.1f}s, torch grads {t_grad:.1f}s', flush=True)
    return info


# ------------------------------------------------------------------------------------------------ text models
# transformers is not installed for /usr/bin/python3, so the two text models are re-implemented here from their
# config.json (HF BertModel / GPT2LMHeadModel in eval mode) and loaded from model.safetensors. The forward is
# checked against the ONNX file through the loss value Graft computes from the same feed (bench/zoo-parity.ts).

def read_safetensors(path):
    with open(path, 'rb') as f:
        b = f.read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    data = b[8 + n:]
    dt = {'F32': np.float32, 'I64': np.int64, 'F64': np.float64}
    out = {}
    for k, v in h.items():
        if k == '__metadata__':
            continue
        s, e = v['data_offsets']
        out[k] = np.frombuffer(data[s:e], dtype=dt[v['dtype']]).reshape(v['shape']).copy()
    return out


F32_MIN = float(np.finfo(np.float32).min)


def bert_forward(P, cfg, ids, mask, tt):
    B, S = ids.shape
    H, nh = cfg['hidden_size'], cfg['num_attention_heads']
    dh, eps = H // nh, cfg['layer_norm_eps']
    ln = lambda x, n: F.layer_norm(x, (H,), P[n + '.weight'], P[n + '.bias'], eps)
    lin = lambda x, n: x @ P[n + '.weight'].T + P[n + '.bias']
    h = P['embeddings.word_embeddings.weight'][ids] + P['embeddings.position_embeddings.weight'][torch.arange(S)] \
        + P['embeddings.token_type_embeddings.weight'][tt]
    h = ln(h, 'embeddings.LayerNorm')
    ext = (1 - mask[:, None, None, :].to(h.dtype)) * F32_MIN
    heads = lambda x: x.view(B, S, nh, dh).transpose(1, 2)
    for i in range(cfg['num_hidden_layers']):
        p = f'encoder.layer.{i}.'
        q, k, v = (heads(lin(h, p + 'attention.self.' + n)) for n in ('query', 'key', 'value'))
        a = ((q @ k.transpose(-1, -2)) / math.sqrt(dh) + ext).softmax(-1) @ v
        a = a.transpose(1, 2).reshape(B, S, H)
        h = ln(lin(a, p + 'attention.output.dense') + h, p + 'attention.output.LayerNorm')
        m = lin(F.gelu(lin(h, p + 'intermediate.dense')), p + 'output.dense')
        h = ln(m + h, p + 'output.LayerNorm')
    pooled = torch.tanh(lin(h[:, 0], 'pooler.dense'))
    return h, pooled


def gpt2_forward(P, cfg, ids, mask):
    B, S = ids.shape
    H, nh = cfg['n_embd'], cfg['n_head']
    dh, eps = H // nh, cfg['layer_norm_epsilon']
    ln = lambda x, n: F.layer_norm(x, (H,), P[n + '.weight'], P[n + '.bias'], eps)
    conv1d = lambda x, n: x @ P[n + '.weight'] + P[n + '.bias']  # GPT-2's Conv1D: weight [in, out]
    gelu_new = lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    h = P['transformer.wte.weight'][ids] + P['transformer.wpe.weight'][torch.arange(S)]
    allowed = torch.tril(torch.ones(S, S, dtype=torch.bool))[None, None] & mask[:, None, None, :].bool()
    heads = lambda x: x.view(B, S, nh, dh).transpose(1, 2)
    for i in range(cfg['n_layer']):
        p = f'transformer.h.{i}.'
        q, k, v = (heads(t) for t in conv1d(ln(h, p + 'ln_1'), p + 'attn.c_attn').split(H, -1))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        a = s.masked_fill(~allowed, F32_MIN).softmax(-1) @ v
        h = h + conv1d(a.transpose(1, 2).reshape(B, S, H), p + 'attn.c_proj')
        h = h + conv1d(gelu_new(conv1d(ln(h, p + 'ln_2'), p + 'mlp.c_fc')), p + 'mlp.c_proj')
    return ln(h, 'transformer.ln_f') @ P['transformer.wte.weight'].T  # lm_head tied to wte


TEXT_MODELS = {'bert-mini-debian': 'bert', 'gpt2-mini-debian': 'gpt2'}
TEXT_SEQ = 16


def run_text_model(name, text_dir, out_dir):
    folder = os.path.join(text_dir, name)
    onnx_path = os.path.abspath(os.path.join(folder, 'onnx', 'model.onnx'))
    kind = TEXT_MODELS[name]
    cfg = json.load(open(os.path.join(folder, 'config.json')))
    hf = read_safetensors(os.path.join(folder, 'model.safetensors'))
    g = onnx.load(onnx_path).graph
    inits = {i.name: numpy_helper.to_array(i).copy() for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT}
    # ONNX initializer <- HF tensor: by name (BERT's ONNX is the bare BertModel: drop the 'bert.' prefix), then by value
    mapping, unmatched, P32 = {}, [], {}
    for n, a in inits.items():
        src = next((c for c in (n, 'bert.' + n) if c in hf), None)
        if src is None or hf[src].shape != a.shape:
            if a.size > 1:
                unmatched.append({'name': n, 'shape': list(a.shape)})
            continue
        mapping[n] = {'torch': src, 'how': 'name', 'transform': 'none', 'max_abs_diff_onnx_vs_safetensors': float(np.abs(hf[src] - a).max())}
        P32[n] = a
    gen = torch.Generator().manual_seed(SEED + 3)
    B, S = BATCH, TEXT_SEQ
    ids = torch.randint(5, cfg['vocab_size'], (B, S), generator=gen)
    mask = torch.ones(B, S, dtype=torch.int64)
    mask[1, S - 5:] = 0  # right padding on the second sequence
    ids[mask == 0] = 0
    feeds = {'input_ids': ids, 'attention_mask': mask}
    if kind == 'bert':
        tt = torch.zeros(B, S, dtype=torch.int64)
        tt[:, S // 2:] = 1
        feeds['token_type_ids'] = tt
    fwd = (lambda P: bert_forward(P, cfg, ids, mask, tt)[0]) if kind == 'bert' else (lambda P: gpt2_forward(P, cfg, ids, mask))
    with torch.no_grad():
        y = fwd({k: torch.from_numpy(v) for k, v in P32.items()})
    R = torch.randn(y.shape, generator=gen)
    write_safetensors(os.path.join(out_dir, f'{name}.feed.safetensors'), {**{k: v.numpy() for k, v in feeds.items()}, 'R': R.numpy()})
    losses = {}
    for prec, dt in [('32', torch.float32), ('64', torch.float64)]:
        P = {k: torch.tensor(v, dtype=dt, requires_grad=True) for k, v in P32.items()}
        loss = (fwd(P) * R.to(dt)).sum()
        loss.backward()
        grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().numpy().astype(np.float32) for k, p in P.items()}
        losses['ws' + prec] = float(loss)
        write_safetensors(os.path.join(out_dir, f'{name}.ref{"64" if prec == "64" else ""}-ws.safetensors'), grads,
                          {'loss': repr(float(loss)), 'precision': 'float' + prec})
    info = {
        'name': name, 'kind': 'text', 'onnx': onnx_path, 'feed': f'{name}.feed.safetensors', 'opset': None,
        'input': [B, S], 'output': list(y.shape), 'grad_losses': ['weighted-sum'],
        'torch_parameters': len(P32), 'torch_parameters_not_in_onnx': [k for k in hf if k.removeprefix('bert.') not in mapping],
        'mapping': mapping, 'unmatched_float_initializers': unmatched,
        'losses': {'weighted-sum': losses['ws32'], 'weighted-sum float64': losses['ws64']},
        'loss_scale': {'weighted-sum': float((y.double() * R.double()).abs().sum())},
        'note': 'hand-written PyTorch re-implementation (transformers is not installed), weights from model.safetensors',
        'seconds': {},
    }
    with open(os.path.join(out_dir, f'{name}.json'), 'w') as f:
        json.dump(info, f, indent=1)
    print(f'{name}: {len(mapping)} ONNX initializers mapped to model.safetensors, {len(unmatched)} unmatched, '
          f'output {list(y.shape)}, weighted-sum loss {losses["ws32"]:.6g}', flush=True)
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default='.graft-cache/zoo')
    ap.add_argument('--models', default=','.join(list(MODELS) + list(FOLD_SLICES)))
    ap.add_argument('--threads', type=int, default=os.cpu_count() or 1)
    ap.add_argument('--text-models', default=None, help='folder holding bert-mini-debian/ and gpt2-mini-debian/')
    ap.add_argument('--confirm-flips', default=None, metavar='MODEL', help='see confirm_flips(); prints JSON')
    ap.add_argument('--kinds', default='ws,ce', help='with --confirm-flips: ws,ce')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.confirm_flips:
        print(json.dumps(confirm_flips(a.confirm_flips, a.out, a.kinds.split(','))))
        return
    os.makedirs(a.out, exist_ok=True)
    names = [n for n in a.models.split(',') if n]
    known = list(MODELS) + list(FOLD_SLICES)
    for n in names:
        if n not in known:
            sys.exit(f'unknown model {n} (known: {", ".join(known)})')
    bn = bn_folding_report(a.out)
    for r in bn:
        print(f"BN probe (resnet18): {r['settings']}: {r['BatchNormalization']} BatchNormalization, "
              f"{r['renamed initializers']}/{r['initializers']} initializers renamed", flush=True)
    for n in names:
        run_model(n, a.out)
    if a.text_models:
        try:
            import transformers  # noqa: F401
            have_tf = True
        except ImportError:
            have_tf = False
        note = ('transformers is importable, but the reference below is the hand-written one anyway' if have_tf else
                'transformers is not importable with /usr/bin/python3, so the PyTorch reference is a hand-written '
                're-implementation of BertModel / GPT2LMHeadModel (eval mode) loading model.safetensors; its forward '
                'pass is validated by the loss values (Graft evaluates the ONNX file itself).')
        with open(os.path.join(a.out, 'text-note.txt'), 'w') as f:
            f.write(note + '\n')
        for n in TEXT_MODELS:
            if os.path.exists(os.path.join(a.text_models, n, 'onnx', 'model.onnx')):
                run_text_model(n, a.text_models, a.out)
                names.append(n)
    mpath = os.path.join(a.out, 'manifest.json')
    done = json.load(open(mpath))['models'] if os.path.exists(mpath) else []
    manifest = {
        'torch': torch.__version__, 'torchvision': torchvision.__version__, 'onnx': onnx.__version__,
        'batch': BATCH, 'seed': SEED,
        'models': [n for n in known + list(TEXT_MODELS) if n in done or n in names],
    }
    with open(os.path.join(a.out, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)


if __name__ == '__main__':
    main()
