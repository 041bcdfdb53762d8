#!/usr/bin/python3
"""Joins the --scores files of tools/detect_ensemble_loso.sh by path and compares the
first member alone with rules over all members (docs/detect.md, "An ensemble of
leave-one-source-out members").

usage: tools/detect_ensemble_analyse.py WORK OUTER   (reads WORK/OUTER-m*.csv, m0 first)

Evaluation set: the outer held-out source's files plus the test split of the other class
(as `detect train` reports a held-out source). Per source, the share judged fake and
uncertain at 0.3 / 0.7 under: m0 alone; the members' mean p_fake; all members agreeing;
the mean when the members' spread is under 0.5."""
import csv
import glob
import sys

import numpy as np


def load(path):
    return {r['path']: r for r in csv.DictReader(open(path))}


def auc(s, y):
    order = np.argsort(s, kind='mergesort')
    ranks = np.empty(len(s))
    ss = s[order]
    i = 0
    while i < len(ss):  # average ranks over ties
        j = i
        while j + 1 < len(ss) and ss[j + 1] == ss[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j + 2) / 2
        i = j + 1
    n1, n0 = (y == 1).sum(), (y == 0).sum()
    return (ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def main():
    work, outer = sys.argv[1], sys.argv[2]
    files = sorted(glob.glob(f'{work}/{outer}-m*.csv'), key=lambda f: int(f.rsplit('-m', 1)[1][:-4]))
    ms = [load(f) for f in files]
    P, lab, src, split = [], [], [], []
    for path, r in ms[0].items():
        if all(path in m for m in ms):
            P.append([float(m[path]['p_fake']) for m in ms])
            lab.append(int(r['label']))
            src.append(r['source'].rstrip('/').split('/')[-1])
            split.append(r['split'])
    P, lab, src, split = np.array(P), np.array(lab), np.array(src), np.array(split)
    ho = split == 'heldout'
    ho_src, ho_lab = src[ho][0], lab[ho][0]
    ev = ho | ((split == 'test') & (lab != ho_lab))
    print(f'held out: {ho_src} ({ho.sum()} files); {(ev & ~ho).sum()} test files of the other class; '
          f'{len(ms)} members: {", ".join(f.rsplit("/", 1)[1] for f in files)}')
    mean, lo, hi = P.mean(1), P.min(1), P.max(1)
    for name, s in [('m0 alone', P[:, 0]), ('mean p_fake', mean), ('min', lo), ('max', hi)]:
        print(f'  AUC {name:12s} {auc(s[ev], lab[ev]):.4f}')
    rules = {
        'm0 alone': (P[:, 0] >= 0.7, P[:, 0] < 0.3),
        'mean': (mean >= 0.7, mean < 0.3),
        'all agree': (lo >= 0.7, hi < 0.3),
        'mean, spread<0.5': ((mean >= 0.7) & (hi - lo < 0.5), (mean < 0.3) & (hi - lo < 0.5)),
    }
    shown = ev | (split == 'test')
    for name, (fake, real) in rules.items():
        cells = []
        for s_ in sorted(set(src[shown])):
            sel = (src == s_) & (ho if s_ == ho_src else shown)
            unc = ~fake[sel] & ~real[sel]
            cells.append(f'{s_}{"*" if s_ == ho_src else ""} fake {100 * fake[sel].mean():.1f}% '
                         f'unc {100 * unc.mean():.1f}%')
        print(f'  {name:16s} ' + ' | '.join(cells))


if __name__ == '__main__':
    main()
