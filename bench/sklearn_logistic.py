#!/usr/bin/env python3
"""scikit-learn's LogisticRegression on features dumped by bench/features.ts, for comparison with
Graft's src/heads/logistic.ts. Reads raw little-endian float32 features (rows × dim) and int32 labels,
standardizes with StandardScaler (population std, as Graft does), fits multinomial lbfgs with
C = 1 / (l2 · n_train), and prints one JSON line: fit seconds (median of --repeats), iterations,
test accuracy.

Why C = 1/(l2·n): Graft minimizes (1/n)·Σ CE + (l2/2)·‖W‖² (bias not penalized); scikit-learn minimizes
C·Σ CE + ½·‖W‖² (intercept not penalized with lbfgs). Multiplying Graft's objective by 1/l2 gives
scikit-learn's with C = 1/(l2·n): the same minimizer.

  /usr/bin/python3 bench/sklearn_logistic.py --dir DIR --dim 1280 --l2 0.1 [--repeats 3] [--threads 2]
DIR holds x_train.f32, y_train.i32, x_test.f32, y_test.i32.
"""
import argparse, json, os, sys, time

ap = argparse.ArgumentParser()
ap.add_argument('--dir', required=True)
ap.add_argument('--dim', type=int, required=True)
ap.add_argument('--l2', type=float, required=True)
ap.add_argument('--repeats', type=int, default=3)
ap.add_argument('--threads', type=int, default=0)
ap.add_argument('--max-iter', type=int, default=1000)
ap.add_argument('--tol', type=float, default=1e-6)
a = ap.parse_args()
if a.threads:
    for v in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[v] = str(a.threads)

import warnings
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.exceptions import ConvergenceWarning


def load(name, dtype, dim=None):
    x = np.fromfile(os.path.join(a.dir, name), dtype=dtype)
    return x.reshape(-1, dim) if dim else x


xtr = load('x_train.f32', '<f4', a.dim).astype(np.float64)
ytr = load('y_train.i32', '<i4')
xte = load('x_test.f32', '<f4', a.dim).astype(np.float64)
yte = load('y_test.i32', '<i4')
n = len(ytr)
C = 1.0 / (a.l2 * n)

times, clf, scaler = [], None, None
for _ in range(a.repeats):
    t0 = time.perf_counter()
    scaler = StandardScaler().fit(xtr)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', ConvergenceWarning)
        clf = LogisticRegression(C=C, solver='lbfgs', max_iter=a.max_iter, tol=a.tol).fit(scaler.transform(xtr), ytr)
    times.append(time.perf_counter() - t0)
acc = float((clf.predict(scaler.transform(xte)) == yte).mean())
import sklearn
print(json.dumps({'seconds': sorted(times)[len(times) // 2], 'iterations': int(np.max(clf.n_iter_)), 'accuracy': acc, 'C': C,
                  'n_train': n, 'n_test': len(yte), 'sklearn': sklearn.__version__}))
