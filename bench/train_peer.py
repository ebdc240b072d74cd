#!/usr/bin/python3
"""bench/train_peer.py -- the PyTorch peer of bench/bench_train.c: the SAME bi-encoder, losses and
optimisers, on the same batches (feature ids written by `bench_train prep`) from the same initial
weights, so that speed is compared on equal work and the loss curves can be laid side by side.

    train_peer.py train OUT [--threads T]   -> "time train SECONDS CPU-SECONDS STEPS PAIRS",
                                               OUT/loss_torch.tsv
    train_peer.py embed OUT [--threads T] [--reps R]
                                            -> "time embed1 ...", "time embed256 ...", and
                                               "check embed_max_abs_diff X" against
                                               OUT/emb_kprec.f32 (kprec's embeddings of the same
                                               titles from the same weights)

The model (model/bienc.h): one shared tower, EmbeddingBag(mean, sparse) [n_buckets x E] ->
Linear(E, H) -> tanh -> Linear(H, D) -> L2 normalise. The loss (model/train_step.c) at each
Matryoshka size p in (32, 64, 128), prefix re-normalised, summed with weight 1:
    in-batch softmax over the batch's keys (tau 0.05, mean over rows)
  + MSE of the cosine on the SR labels
  + (1 - Pearson) of the cosine against the teacher over all distillation pairs
  + (1 - Pearson) over the known distillation pairs only.
Optimisers: SparseAdam (lr_emb) for the embedding bag, Adam (lr) for the dense weights; global
gradient-norm clipping at 5 (the sparse gradient coalesced first); the learning rate of
kprec's schedule (linear warmup over 5% of the steps, cosine to 5%). One difference stays:
kprec's lazy Adam counts steps per embedding row for its bias correction, SparseAdam counts them
per table.
"""
import argparse
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

WARM_STEPS = 5
PEARSON_EPS = 1e-9


def meta(out):
    m = {}
    for line in open(os.path.join(out, "meta.txt")):
        k, *v = line.split()
        m[k] = [float(x) for x in v] if len(v) > 1 else float(v[0])
    return m


class Tower(torch.nn.Module):
    def __init__(self, m, init):
        super().__init__()
        nb, E, H, D = int(m["n_buckets"]), int(m["emb_dim"]), int(m["hidden_dim"]), int(m["out_dim"])
        w = np.fromfile(init, dtype=np.float32)
        sizes = [nb * E, H * E, H, D * H, D]
        if w.size != sum(sizes):
            sys.exit("train_peer: %s has %d floats, expected %d" % (init, w.size, sum(sizes)))
        parts = np.split(w, np.cumsum(sizes)[:-1])
        self.emb = torch.nn.EmbeddingBag(nb, E, mode="mean", sparse=True)
        self.l1 = torch.nn.Linear(E, H)
        self.l2 = torch.nn.Linear(H, D)
        with torch.no_grad():
            self.emb.weight.copy_(torch.from_numpy(parts[0].reshape(nb, E)))
            self.l1.weight.copy_(torch.from_numpy(parts[1].reshape(H, E)))
            self.l1.bias.copy_(torch.from_numpy(parts[2]))
            self.l2.weight.copy_(torch.from_numpy(parts[3].reshape(D, H)))
            self.l2.bias.copy_(torch.from_numpy(parts[4]))

    def forward(self, ids, offsets):
        # ids [total], offsets [n] (start of each example): out [n x D], rows L2-normalised
        return F.normalize(self.l2(torch.tanh(self.l1(self.emb(ids, offsets)))), dim=1)


class Reader:
    def __init__(self, path):
        self.b = open(path, "rb").read()
        self.o = 0

    def arr(self, dtype, n):
        a = np.frombuffer(self.b, dtype=dtype, count=n, offset=self.o)
        self.o += a.nbytes
        return a

    def ids(self, n):
        off = self.arr(np.int32, n + 1)
        ids = self.arr(np.uint32, int(off[-1]))
        return (torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(off[:-1].astype(np.int64)))


def read_batches(out):
    r = Reader(os.path.join(out, "batches.bin"))
    magic, ver, n = r.arr(np.uint32, 3)
    if magic != 0x4254504B or ver != 1:
        sys.exit("train_peer: batches.bin: bad magic or version")
    bs = []
    t = lambda a, dt=torch.int64: torch.from_numpy(np.array(a)).to(dt)
    for _ in range(int(n)):
        nI, nK, nS, nR, nD = (int(x) for x in r.arr(np.int32, 5))
        b = {"items": r.ids(nI), "keys": r.ids(nK)}
        b["soft_item"], b["soft_key"] = t(r.arr(np.int32, nS)), t(r.arr(np.int32, nS))
        b["sr_item"], b["sr_key"] = t(r.arr(np.int32, nR)), t(r.arr(np.int32, nR))
        b["sr_label"] = t(r.arr(np.float32, nR), torch.float32)
        b["dis_item"], b["dis_key"] = t(r.arr(np.int32, nD)), t(r.arr(np.int32, nD))
        b["dis_teacher"] = t(r.arr(np.float32, nD), torch.float32)
        b["dis_known"] = t(r.arr(np.uint8, nD), torch.bool)
        b["pairs"] = nS + nR + nD
        bs.append(b)
    return bs


def pearson_loss(s, t):
    if s.numel() < 2:
        return s.sum() * 0
    a, b = s - s.mean(), t - t.mean()
    r = (a * b).sum() / torch.sqrt(((a * a).sum() + PEARSON_EPS) * ((b * b).sum() + PEARSON_EPS))
    return 1 - r


def step_loss(m, b, EI, EK, sizes):
    total, parts = 0, [0.0, 0.0, 0.0, 0.0]
    D = EI.shape[1]
    for p in sizes:
        A = EI if p == D else F.normalize(EI[:, :p], dim=1)
        K = EK if p == D else F.normalize(EK[:, :p], dim=1)
        S = A[b["soft_item"]] @ K.t() / m["tau"]
        l_soft = F.cross_entropy(S, b["soft_key"])
        s_sr = (A[b["sr_item"]] * K[b["sr_key"]]).sum(1)
        l_sr = ((s_sr - b["sr_label"]) ** 2).mean()
        s_d = (A[b["dis_item"]] * K[b["dis_key"]]).sum(1)
        l_d = pearson_loss(s_d, b["dis_teacher"])
        kn = b["dis_known"]
        l_k = pearson_loss(s_d[kn], b["dis_teacher"][kn])
        total = total + l_soft + l_sr + l_d + l_k
        for i, l in enumerate((l_soft, l_sr, l_d, l_k)):
            parts[i] += float(l) / len(sizes)
    return total, parts


def lr_factor(m, total, step):
    warm = int(m["warmup"] * total) if m["warmup"] > 0 else 0
    if step < warm:
        return (step + 1) / warm
    span = max(total - warm, 1)
    p = min((step - warm) / span, 1.0)
    lo = m["min_lr_frac"]
    return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * p))


def clip_(params, max_norm):
    sq = 0.0
    for q in params:
        if q.grad is None:
            continue
        if q.grad.is_sparse:
            q.grad = q.grad.coalesce()
            sq += float((q.grad._values() ** 2).sum())
        else:
            sq += float((q.grad ** 2).sum())
    n = math.sqrt(sq)
    if max_norm > 0 and n > max_norm:
        s = max_norm / n
        for q in params:
            if q.grad is None:
                continue
            if q.grad.is_sparse:
                q.grad._values().mul_(s)
            else:
                q.grad.mul_(s)
    return n


def cmd_train(out, threads):
    torch.set_num_threads(threads)
    m = meta(out)
    sizes = [int(x) for x in (m["prefixes"] if isinstance(m["prefixes"], list) else [m["prefixes"]])]
    if int(m["out_dim"]) not in sizes:
        sizes.append(int(m["out_dim"]))
    tower = Tower(m, os.path.join(out, "init.f32"))
    bs = read_batches(out)
    dense = [tower.l1.weight, tower.l1.bias, tower.l2.weight, tower.l2.bias]
    opt_e = torch.optim.SparseAdam([tower.emb.weight], lr=m["lr_emb"], betas=(0.9, 0.999), eps=1e-8)
    opt_d = torch.optim.Adam(dense, lr=m["lr"], betas=(0.9, 0.999), eps=1e-8)
    steps = len(bs)
    lf = open(os.path.join(out, "loss_torch.tsv"), "w")
    lf.write("step\ttotal\tsoftmax\tsr\tdistill\tdistill_known\n")
    t0 = c0 = 0.0
    pairs = 0
    for s, b in enumerate(bs):
        if s == WARM_STEPS:
            t0, c0 = time.perf_counter(), time.process_time()
        f = lr_factor(m, steps, s)
        for g in opt_e.param_groups:
            g["lr"] = m["lr_emb"] * f
        for g in opt_d.param_groups:
            g["lr"] = m["lr"] * f
        opt_e.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        EI = tower(*b["items"])
        EK = tower(*b["keys"])
        loss, parts = step_loss(m, b, EI, EK, sizes)
        loss.backward()
        clip_([tower.emb.weight] + dense, m["clip"])
        opt_e.step()
        opt_d.step()
        if s >= WARM_STEPS:
            pairs += b["pairs"]
        lf.write("%d\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\n" % ((s + 1, float(loss)) + tuple(parts)))
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    lf.close()
    print("time train %.6f %.6f %d %d" % (secs, cpu, steps - WARM_STEPS, pairs))


def cmd_embed(out, threads, reps):
    torch.set_num_threads(threads)
    m = meta(out)
    tower = Tower(m, os.path.join(out, "init.f32"))
    r = Reader(os.path.join(out, "titles.bin"))
    n = int(r.arr(np.int32, 1)[0])
    off = r.arr(np.int32, n + 1).astype(np.int64)
    ids = torch.from_numpy(r.arr(np.uint32, int(off[-1])).astype(np.int64))
    n1 = min(n, 1024)
    singles = [(ids[off[i]:off[i + 1]], torch.zeros(1, dtype=torch.int64)) for i in range(n1)]
    batches = []
    for i in range(0, n, 256):
        j = min(n, i + 256)
        batches.append((ids[off[i]:off[j]], torch.from_numpy(off[i:j] - off[i])))
    best1 = best256 = 1e30
    cpu1 = cpu256 = 0.0
    with torch.inference_mode():
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            for x, o in singles:
                tower(x, o)
            t1, c1 = time.perf_counter(), time.process_time()
            E = torch.cat([tower(x, o) for x, o in batches])
            t2, c2 = time.perf_counter(), time.process_time()
            if t1 - t0 < best1:
                best1, cpu1 = t1 - t0, c1 - c0
            if t2 - t1 < best256:
                best256, cpu256 = t2 - t1, c2 - c1
    print("time embed1 %.6f %.6f %d" % (best1, cpu1, n1))
    print("time embed256 %.6f %.6f %d" % (best256, cpu256, n))
    ref = os.path.join(out, "emb_kprec.f32")
    if os.path.exists(ref):
        k = np.fromfile(ref, dtype=np.float32).reshape(n, -1)
        print("check embed_max_abs_diff %.3g" % float(np.abs(k - E.numpy()).max()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["train", "embed"])
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    if a.cmd == "train":
        cmd_train(a.out, a.threads)
    else:
        cmd_embed(a.out, a.threads, a.reps)


if __name__ == "__main__":
    main()
