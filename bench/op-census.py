#!/usr/bin/python3
"""
Export a broad set of PyTorch models to ONNX for the operator census of bench/op-census.ts (which counts
operator types over these files, the text models of ../shared and the ONNX node tests).

    /usr/bin/python3 bench/op-census.py [--out .graft-cache/op-census] [--models NAME,...]

Needs torch, torchvision and onnx (Debian: python3-torch, python3-torchvision, python3-onnx); no network:
every model is built with weights=None. Each model is exported in eval mode at its opset (17 unless the
exporter needs less) to OUT/NAME.onnx; a model the exporter refuses is listed in OUT/failures.json with the
exporter's message instead (a census must not hide what did not export). Beside torchvision's
classification, segmentation, detection and video models it exports small hand-written transformer blocks
as exported models have them: a pre-norm encoder (nn.TransformerEncoder), a GPT-style decoder with rotary
position embeddings (Sin/Cos), a T5-style block (RMSNorm, relative bias), a GroupNorm U-Net block (diffusion
models) and an Einsum attention.
"""
import argparse
import json
import math
import os
import sys
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision import models

torch.manual_seed(0)


class RotaryGPT(nn.Module):
    """GPT-style decoder layer with rotary embeddings computed in the graph (as Llama/GPT-NeoX exports have them)."""

    def __init__(self, d=64, heads=4, vocab=100):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.h, self.d = heads, d
        self.qkv = nn.Linear(d, 3 * d)
        self.o = nn.Linear(d, d)
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.up, self.gate, self.down = nn.Linear(d, 4 * d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.head = nn.Linear(d, vocab)

    def rope(self, x, pos):
        hd = x.shape[-1]
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ang = pos[:, None].float() * inv[None, :]
        cos, sin = torch.cos(ang), torch.sin(ang)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    def forward(self, ids):
        B, S = ids.shape
        x = self.emb(ids)
        pos = torch.arange(S)
        q, k, v = self.qkv(self.n1(x)).split(self.d, dim=-1)
        sh = lambda t: t.view(B, S, self.h, self.d // self.h).transpose(1, 2)
        q, k, v = self.rope(sh(q), pos), self.rope(sh(k), pos), sh(v)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.d // self.h)
        causal = torch.triu(torch.ones(S, S, dtype=torch.bool), 1)
        att = att.masked_fill(causal, float('-inf')).softmax(-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(B, S, self.d))
        h = self.n2(x)
        x = x + self.down(F.silu(self.gate(h)) * self.up(h))
        return self.head(x)


class T5Block(nn.Module):
    """T5-style block: RMSNorm (Pow, ReduceMean, Sqrt), bucketed relative position bias, ReLU FFN."""

    def __init__(self, d=64, heads=4, buckets=16):
        super().__init__()
        self.h, self.d, self.buckets = heads, d, buckets
        self.w1, self.w2 = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.rel = nn.Embedding(buckets, heads)
        self.fi, self.fo = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def rms(self, x, w):
        return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    def forward(self, x):
        B, S, _ = x.shape
        pos = torch.arange(S)
        rel = (pos[None, :] - pos[:, None]).abs()
        bucket = torch.where(rel < self.buckets // 2, rel,
                             (self.buckets // 2 + torch.log(rel.float().clamp(min=1) / (self.buckets // 2)) / math.log(8) * (self.buckets // 2)).long().clamp(max=self.buckets - 1))
        bias = self.rel(bucket).permute(2, 0, 1)[None]
        h = self.rms(x, self.w1)
        sh = lambda t: t.view(B, S, self.h, -1).transpose(1, 2)
        att = (sh(self.q(h)) @ sh(self.k(h)).transpose(-1, -2) + bias).softmax(-1)
        x = x + self.o((att @ sh(self.v(h))).transpose(1, 2).reshape(B, S, self.d))
        return x + self.fo(F.relu(self.fi(self.rms(x, self.w2))))


class UNetBlock(nn.Module):
    """Diffusion-style block: GroupNorm, SiLU, nearest upsampling (Resize), time embedding with Sin/Cos."""

    def __init__(self, c=32):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.g1, self.g2 = nn.GroupNorm(8, c), nn.GroupNorm(8, c)
        self.t = nn.Linear(c, c)
        self.down = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x, t):
        half = 16
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        emb = t[:, None] * freqs[None]
        emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
        h = F.silu(self.g1(self.c1(x))) + self.t(emb)[:, :, None, None]
        h = self.down(F.silu(self.g2(self.c2(h))))
        h = F.interpolate(h, scale_factor=2.0, mode='nearest')
        return self.out(h) + F.interpolate(x, scale_factor=1.0, mode='bilinear', align_corners=False)


class EinsumAttention(nn.Module):
    """Attention written with torch.einsum (as many research exports are)."""

    def __init__(self, d=64, heads=4):
        super().__init__()
        self.h = heads
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        B, S, D = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.h, D // self.h).unbind(2)
        a = torch.einsum('bqhd,bkhd->bhqk', q, k).softmax(-1)
        return self.o(torch.einsum('bhqk,bkhd->bqhd', a, v).reshape(B, S, D))


def encoder():
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.1, activation='gelu', batch_first=True, norm_first=True)
    return nn.Sequential(nn.TransformerEncoder(layer, 2), nn.LayerNorm(64))


def vit_tiny():
    return models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128)


def img(side, batch=1):
    return (torch.randn(batch, 3, side, side),)


# name -> (constructor, example inputs, opset)
MODELS = {
    'alexnet': (lambda: models.alexnet(), img(224), 17),
    'convnext_tiny': (lambda: models.convnext_tiny(), img(64), 17),
    'densenet121': (lambda: models.densenet121(), img(64), 17),
    'efficientnet_b0': (lambda: models.efficientnet_b0(), img(64), 17),
    'efficientnet_v2_s': (lambda: models.efficientnet_v2_s(), img(64), 17),
    'googlenet': (lambda: models.googlenet(aux_logits=False, init_weights=True), img(64), 17),
    'inception_v3': (lambda: models.inception_v3(aux_logits=False, init_weights=True), img(80), 17),
    'mnasnet0_5': (lambda: models.mnasnet0_5(), img(64), 17),
    'mobilenet_v2': (lambda: models.mobilenet_v2(), img(64), 17),
    'mobilenet_v3_small': (lambda: models.mobilenet_v3_small(), img(64), 17),
    'mobilenet_v3_large': (lambda: models.mobilenet_v3_large(), img(64), 17),
    'regnet_y_400mf': (lambda: models.regnet_y_400mf(), img(64), 17),
    'resnet18': (lambda: models.resnet18(), img(64), 17),
    'resnet50': (lambda: models.resnet50(), img(64), 17),
    'resnext50_32x4d': (lambda: models.resnext50_32x4d(), img(64), 17),
    'shufflenet_v2_x0_5': (lambda: models.shufflenet_v2_x0_5(), img(64), 17),
    'squeezenet1_0': (lambda: models.squeezenet1_0(), img(64), 17),
    'vgg11': (lambda: models.vgg11(), img(224), 17),
    'vit_tiny': (vit_tiny, img(32), 17),
    'swin_t': (lambda: models.swin_t(), img(64), 17),
    'maxvit_t': (lambda: models.maxvit_t(), img(224), 17),
    'fcn_resnet50': (lambda: models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, aux_loss=False), img(64), 17),
    'deeplabv3_mobilenet_v3_large': (lambda: models.segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None), img(64), 17),
    'lraspp_mobilenet_v3_large': (lambda: models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None), img(64), 17),
    'ssdlite320_mobilenet_v3_large': (lambda: models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None), img(320), 17),
    'fasterrcnn_mobilenet_v3_large_320_fpn': (lambda: models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None), img(320), 17),
    'r3d_18': (lambda: models.video.r3d_18(), (torch.randn(1, 3, 4, 32, 32),), 17),
    'transformer_encoder': (encoder, (torch.randn(2, 10, 64),), 17),
    'rotary_gpt': (RotaryGPT, (torch.randint(0, 100, (2, 12)),), 17),
    't5_block': (T5Block, (torch.randn(2, 10, 64),), 17),
    'unet_block': (UNetBlock, (torch.randn(1, 3, 32, 32), torch.tensor([3.0])), 17),
    'einsum_attention': (EinsumAttention, (torch.randn(2, 10, 64),), 17),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default='.graft-cache/op-census')
    ap.add_argument('--models', default=','.join(MODELS))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)
    failures = {}
    for name in a.models.split(','):
        ctor, inputs, opset = MODELS[name]
        path = os.path.join(a.out, f'{name}.onnx')
        if os.path.exists(path):
            print(f'{name}: exists', flush=True)
            continue
        t0 = time.time()
        try:
            torch.manual_seed(0)
            model = ctor().eval()
            # not under no_grad: there nn.MultiheadAttention takes a fused fast path the exporter does not know
            torch.onnx.export(model, inputs, path + '.tmp', opset_version=opset, do_constant_folding=True)
            os.replace(path + '.tmp', path)
            print(f'{name}: exported in {time.time() - t0:.1f} s', flush=True)
        except Exception as e:  # the census lists what the exporter refused
            msg = str(e).strip().split('\n')[0][:300]
            failures[name] = f'{type(e).__name__}: {msg}'
            print(f'{name}: FAILED {failures[name]}', flush=True)
            if os.path.exists(path + '.tmp'):
                os.remove(path + '.tmp')
    prev = {}
    fpath = os.path.join(a.out, 'failures.json')
    if os.path.exists(fpath):
        prev = json.load(open(fpath)).get('failures', {})
    prev = {k: v for k, v in prev.items() if not os.path.exists(os.path.join(a.out, f'{k}.onnx'))}
    prev.update(failures)
    json.dump({'torch': torch.__version__, 'failures': prev}, open(fpath, 'w'), indent=1)


if __name__ == '__main__':
    main()
