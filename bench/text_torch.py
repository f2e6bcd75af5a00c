#!/usr/bin/python3
"""PyTorch peer of bench/text.ts: BERT-mini and GPT-2-mini written by hand (transformers is not
installed), weights loaded from the same model.safetensors files, timed on the same inputs.

Benchmark tooling only; Graft never runs Python. Run with Debian's /usr/bin/python3 (python3-torch).

  --serve   print {"ready": ...}, then answer JSON lines on stdin:
              {"task": "encoder", "iters": n}   -> {"ms": [...]}  one fine-tuning step each (batch from --inputs)
              {"task": "generate", "iters": n}  -> {"ms": [...], "tokens": [[...], ...]}  greedy generation
              {"quit": true}
  --inputs FILE  JSON written by bench/text.ts: {"encoder": {"ids": [[...]], "mask": [[...]], "labels": [...]},
                 "generate": {"prompts": [[...]], "new_tokens": n}, "lr": x}

  --gen-speed FILE  generation speed for bench/text-generation.ts speed: JSON {"prompt": [...],
                 "new_tokens": [n, ...], "wpe": null or a raw float32 file of position embeddings
                 [positions, n_embd] replacing the model's, "reps": r, "max_uncached": n (longer uncached
                 rows are skipped)}; prints one JSON object with
                 tokens/s (best of reps) and the tokens of greedy generation with and without the cache.

Both models run in eval mode (no dropout), as the ONNX exports do. `greedy` re-runs the full prefix
each step with no key/value cache (the uncached algorithm of Graft's generate.ts); `greedy_cached`
keeps each layer's keys and values (the cached one), so each ratio compares the engines on one algorithm.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        a, b = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.float32).reshape(v["shape"]).clone()
    return out


class BertLayer(nn.Module):
    def __init__(self, d, heads, inner, eps):
        super().__init__()
        self.h = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.fc1, self.fc2 = nn.Linear(d, inner), nn.Linear(inner, d)
        self.ln2 = nn.LayerNorm(d, eps=eps)

    def forward(self, x, bias):
        B, S, D = x.shape
        split = lambda t: t.view(B, S, self.h, D // self.h).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // self.h) + bias, -1) @ v
        x = self.ln1(x + self.o(a.transpose(1, 2).reshape(B, S, D)))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class BertClassifier(nn.Module):
    def __init__(self, cfg, classes=2):
        super().__init__()
        d = cfg["hidden_size"]
        self.word = nn.Embedding(cfg["vocab_size"], d)
        self.pos = nn.Embedding(cfg["max_position_embeddings"], d)
        self.tok_type = nn.Embedding(cfg["type_vocab_size"], d)
        self.ln = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])
        self.layers = nn.ModuleList(BertLayer(d, cfg["num_attention_heads"], cfg["intermediate_size"], cfg["layer_norm_eps"]) for _ in range(cfg["num_hidden_layers"]))
        self.head = nn.Linear(d, classes)

    def load(self, w):
        p = "bert."
        with torch.no_grad():
            self.word.weight.copy_(w[p + "embeddings.word_embeddings.weight"])
            self.pos.weight.copy_(w[p + "embeddings.position_embeddings.weight"])
            self.tok_type.weight.copy_(w[p + "embeddings.token_type_embeddings.weight"])
            self.ln.weight.copy_(w[p + "embeddings.LayerNorm.weight"]); self.ln.bias.copy_(w[p + "embeddings.LayerNorm.bias"])
            for i, L in enumerate(self.layers):
                q = f"{p}encoder.layer.{i}."
                for mod, name in ((L.q, "attention.self.query"), (L.k, "attention.self.key"), (L.v, "attention.self.value"), (L.o, "attention.output.dense"),
                                  (L.fc1, "intermediate.dense"), (L.fc2, "output.dense"), (L.ln1, "attention.output.LayerNorm"), (L.ln2, "output.LayerNorm")):
                    mod.weight.copy_(w[q + name + ".weight"]); mod.bias.copy_(w[q + name + ".bias"])

    def forward(self, ids, mask):
        S = ids.shape[1]
        x = self.ln(self.word(ids) + self.pos(torch.arange(S))[None] + self.tok_type(torch.zeros_like(ids)))
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for L in self.layers:
            x = L(x, bias)
        return self.head(x[:, 0])


class Gpt2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, self.h = cfg["n_embd"], cfg["n_head"]
        self.wte = nn.Embedding(cfg["vocab_size"], d)
        self.wpe = nn.Embedding(cfg["n_positions"], d)
        eps = cfg["layer_norm_epsilon"]
        self.blocks = nn.ModuleList()
        for _ in range(cfg["n_layer"]):
            b = nn.Module()
            b.ln1, b.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
            b.attn = nn.Parameter(torch.zeros(d, 3 * d)); b.attn_b = nn.Parameter(torch.zeros(3 * d))
            b.proj = nn.Parameter(torch.zeros(d, d)); b.proj_b = nn.Parameter(torch.zeros(d))
            b.fc = nn.Parameter(torch.zeros(d, cfg["n_inner"])); b.fc_b = nn.Parameter(torch.zeros(cfg["n_inner"]))
            b.out = nn.Parameter(torch.zeros(cfg["n_inner"], d)); b.out_b = nn.Parameter(torch.zeros(d))
            self.blocks.append(b)
        self.lnf = nn.LayerNorm(d, eps=eps)

    def load(self, w):
        with torch.no_grad():
            self.wte.weight.copy_(w["transformer.wte.weight"]); self.wpe.weight.copy_(w["transformer.wpe.weight"])
            self.lnf.weight.copy_(w["transformer.ln_f.weight"]); self.lnf.bias.copy_(w["transformer.ln_f.bias"])
            for i, b in enumerate(self.blocks):
                p = f"transformer.h.{i}."
                b.ln1.weight.copy_(w[p + "ln_1.weight"]); b.ln1.bias.copy_(w[p + "ln_1.bias"])
                b.ln2.weight.copy_(w[p + "ln_2.weight"]); b.ln2.bias.copy_(w[p + "ln_2.bias"])
                b.attn.copy_(w[p + "attn.c_attn.weight"]); b.attn_b.copy_(w[p + "attn.c_attn.bias"])
                b.proj.copy_(w[p + "attn.c_proj.weight"]); b.proj_b.copy_(w[p + "attn.c_proj.bias"])
                b.fc.copy_(w[p + "mlp.c_fc.weight"]); b.fc_b.copy_(w[p + "mlp.c_fc.bias"])
                b.out.copy_(w[p + "mlp.c_proj.weight"]); b.out_b.copy_(w[p + "mlp.c_proj.bias"])

    def forward_cached(self, ids, past):
        """ids [B, new]; past: per layer (k, v) [B, heads, P, head_dim] or None. Returns last-position
        logits [B, vocab] and the new per-layer (k, v), the past concatenated along the sequence axis."""
        B, S = ids.shape
        P = past[0][0].shape[2] if past else 0
        x = self.wte(ids) + self.wpe(torch.arange(P, P + S))[None]
        causal = torch.ones(S, P + S, dtype=torch.bool).tril(P)[None, None]
        bias = torch.where(causal, 0.0, torch.finfo(torch.float32).min)
        D = x.shape[-1]
        split = lambda t: t.view(B, S, self.h, D // self.h).transpose(1, 2)
        present = []
        for i, b in enumerate(self.blocks):
            q, k, v = (b.ln1(x) @ b.attn + b.attn_b).split(D, -1)
            k, v = split(k), split(v)
            if past:
                k, v = torch.cat([past[i][0], k], 2), torch.cat([past[i][1], v], 2)
            present.append((k, v))
            a = torch.softmax(split(q) @ k.transpose(-1, -2) / math.sqrt(D // self.h) + bias, -1) @ v
            x = x + a.transpose(1, 2).reshape(B, S, D) @ b.proj + b.proj_b
            x = x + F.gelu(b.ln2(x) @ b.fc + b.fc_b, approximate="tanh") @ b.out + b.out_b
        return self.lnf(x[:, -1]) @ self.wte.weight.T, present

    def forward(self, ids, mask):
        B, S = ids.shape
        x = self.wte(ids) + self.wpe(torch.arange(S))[None]
        causal = torch.tril(torch.ones(S, S, dtype=torch.bool))[None, None] & mask[:, None, None, :].bool()
        bias = torch.where(causal, 0.0, torch.finfo(torch.float32).min)
        D = x.shape[-1]
        for b in self.blocks:
            q, k, v = (b.ln1(x) @ b.attn + b.attn_b).split(D, -1)
            split = lambda t: t.view(B, S, self.h, D // self.h).transpose(1, 2)
            a = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(D // self.h) + bias, -1) @ split(v)
            x = x + a.transpose(1, 2).reshape(B, S, D) @ b.proj + b.proj_b
            x = x + F.gelu(b.ln2(x) @ b.fc + b.fc_b, approximate="tanh") @ b.out + b.out_b
        return self.lnf(x) @ self.wte.weight.T


def greedy(model, prompts, new_tokens, pad=0):
    rows = [list(p) for p in prompts]
    with torch.no_grad():
        for _ in range(new_tokens):
            S = max(len(r) for r in rows)
            ids = torch.tensor([r + [pad] * (S - len(r)) for r in rows])
            mask = torch.tensor([[1] * len(r) + [0] * (S - len(r)) for r in rows])
            logits = model(ids, mask)
            last = torch.tensor([len(r) - 1 for r in rows])
            nxt = logits[torch.arange(len(rows)), last].argmax(-1).tolist()
            for r, t in zip(rows, nxt):
                r.append(t)
    return [r[len(p):] for r, p in zip(rows, prompts)]


def greedy_cached(model, prompt, new_tokens):
    """Greedy generation for one prompt with the key/value cache: the prompt once, then one position per token."""
    out = []
    with torch.no_grad():
        logits, past = model.forward_cached(torch.tensor([prompt]), None)
        for step in range(new_tokens):
            t = int(logits[0].argmax())
            out.append(t)
            if step + 1 < new_tokens:
                logits, past = model.forward_cached(torch.tensor([[t]]), past)
    return out


def gen_speed(a, gdir):
    req = json.load(open(a.gen_speed))
    cfg = json.load(open(os.path.join(gdir, "config.json")))
    w = load_safetensors(os.path.join(gdir, "model.safetensors"))
    if req.get("wpe"):
        table = torch.frombuffer(bytearray(open(req["wpe"], "rb").read()), dtype=torch.float32).reshape(-1, cfg["n_embd"]).clone()
        cfg["n_positions"] = table.shape[0]
        w["transformer.wpe.weight"] = table
    gpt = Gpt2(cfg)
    gpt.load(w)
    gpt.eval()
    res = {"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": []}
    for n in req["new_tokens"]:
        row = {"new_tokens": n}
        for name, fn in (("uncached", lambda: greedy(gpt, [req["prompt"]], n)[0]), ("cached", lambda: greedy_cached(gpt, req["prompt"], n))):
            if name == "uncached" and n > req.get("max_uncached", 10**9):
                row[name] = None
                continue
            best = None
            for _ in range(req.get("reps", 1)):
                t0 = time.perf_counter()
                toks = fn()
                dt = time.perf_counter() - t0
                best = dt if best is None else min(best, dt)
            row[name] = {"tokens_per_s": n / best, "seconds": best, "tokens": toks}
        res["rows"].append(row)
    print(json.dumps(res), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--gen-speed")
    ap.add_argument("--inputs")
    ap.add_argument("--models", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "models", "text"))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("GRAFT_THREADS", "2")))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    bdir, gdir = os.path.join(a.models, "bert-mini-debian"), os.path.join(a.models, "gpt2-mini-debian")
    if a.gen_speed:
        return gen_speed(a, gdir)
    if not a.inputs:
        ap.error("--inputs is required (except with --gen-speed)")
    inp = json.load(open(a.inputs))
    bert = BertClassifier(json.load(open(os.path.join(bdir, "config.json"))))
    bert.load(load_safetensors(os.path.join(bdir, "model.safetensors")))
    bert.eval()
    gpt = Gpt2(json.load(open(os.path.join(gdir, "config.json"))))
    gpt.load(load_safetensors(os.path.join(gdir, "model.safetensors")))
    gpt.eval()
    e = inp["encoder"]
    with torch.no_grad():
        bert.head.weight.copy_(torch.tensor(e["head"]["weight"])); bert.head.bias.copy_(torch.tensor(e["head"]["bias"]))
    opt = torch.optim.AdamW(bert.parameters(), lr=inp.get("lr", 1e-4), weight_decay=0.01)
    ids, mask, labels = torch.tensor(e["ids"]), torch.tensor(e["mask"]), torch.tensor(e["labels"])

    def encoder_step():
        opt.zero_grad()
        loss = F.cross_entropy(bert(ids, mask), labels)
        loss.backward()
        opt.step()
        return float(loss)

    g = inp["generate"]
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("quit"):
            break
        ms, extra = [], {}
        for _ in range(req.get("iters", 1)):
            t0 = time.perf_counter()
            if req["task"] == "encoder":
                extra["loss"] = encoder_step()
            else:
                extra["tokens"] = greedy(gpt, g["prompts"], g["new_tokens"])
            ms.append((time.perf_counter() - t0) * 1000)
        print(json.dumps({"ms": ms, **extra}), flush=True)


if __name__ == "__main__":
    main()
