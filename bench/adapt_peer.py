#!/usr/bin/env python3
"""NumPy + scikit-learn peer of bench/adapt.ts: source-only and CORAL on the same cached features.
CORAL as in src/adapt/coral.ts: C = cov + lambda * mean variance * I for each domain, source moved by
(x - mu_s) C_s^{-1/2} C_t^{1/2} + mu_t (numpy.linalg.eigh), then a StandardScaler + multinomial
LogisticRegression (lbfgs, C = 1/(l2 n), the same objective as src/heads/logistic.ts). Prints one JSON
line {method: {seconds, accuracy}}.

  /usr/bin/python3 bench/adapt_peer.py --dir DIR --dim 256 --lambda 0.1 --l2 0.01 [--threads 1]
DIR holds xs.f32, ys.i32, xt.f32, yt.i32 (little-endian, rows x dim).
"""
import argparse, json, os, time

ap = argparse.ArgumentParser()
ap.add_argument('--dir', required=True)
ap.add_argument('--dim', type=int, required=True)
ap.add_argument('--lambda', dest='lam', type=float, default=0.1)
ap.add_argument('--l2', type=float, default=0.01)
ap.add_argument('--threads', type=int, default=1)
a = ap.parse_args()
for v in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[v] = str(a.threads)
import warnings
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
warnings.filterwarnings('ignore')

ld = lambda f, t: np.fromfile(os.path.join(a.dir, f), dtype=t)
xs = ld('xs.f32', np.float32).reshape(-1, a.dim).astype(np.float64); ys = ld('ys.i32', np.int32)
xt = ld('xt.f32', np.float32).reshape(-1, a.dim).astype(np.float64); yt = ld('yt.i32', np.int32)

def head(x, y):
    sc = StandardScaler().fit(x)
    m = LogisticRegression(C=1.0 / (a.l2 * len(x)), max_iter=200, tol=1e-6).fit(sc.transform(x), y)
    return lambda z: m.predict(sc.transform(z))

def power(c, p):
    w, v = np.linalg.eigh(c)
    return (v * np.maximum(w, 1e-12) ** p) @ v.T

def reg_cov(x):
    c = np.cov(x, rowvar=False)
    return c + a.lam * np.trace(c) / c.shape[0] * np.eye(c.shape[0])

out = {}
t = time.perf_counter(); h = head(xs, ys); out['source-only'] = {'seconds': time.perf_counter() - t, 'accuracy': float((h(xt) == yt).mean())}
t = time.perf_counter()
moved = (xs - xs.mean(0)) @ power(reg_cov(xs), -0.5) @ power(reg_cov(xt), 0.5) + xt.mean(0)
h = head(moved, ys)
out['coral'] = {'seconds': time.perf_counter() - t, 'accuracy': float((h(xt) == yt).mean())}
print(json.dumps(out))
