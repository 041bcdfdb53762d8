#!/usr/bin/python3
"""Derive and check Winograd F(4x4, 2x2) for the phase convolutions of a 4x4
stride-2 layer (the next step after kernels/wino.c's F(2x2, 2x2); docs/status.md,
"End of session 14"). Points 0, 1, -1, 2 and infinity; B^T's rows scaled to
integers (the input transform then adds, subtracts and doubles), G's rows
divided by the same factors (U is made once per call).

    /usr/bin/python3 tools/winograd_f42.py

prints A^T, G, B^T, checks Y = A^T [(G g G^T) * (B^T d B)] A against the
direct 2x2 correlation of a 5x5 patch in float64 (identity) and float32 (the
error a float kernel would see), and the multiply counts against F(2x2, 2x2).
Needs Debian's python3-numpy."""
import numpy as np

M, R = 4, 2
A = M + R - 1
PTS = [0.0, 1.0, -1.0, 2.0]


def derive():
    G = np.zeros((A, R))
    AT = np.zeros((M, A))
    for i, p in enumerate(PTS):
        G[i] = [p ** j for j in range(R)]
        AT[:, i] = [p ** j for j in range(M)]
    G[A - 1, R - 1] = 1.0  # the point at infinity: the leading coefficients
    AT[M - 1, A - 1] = 1.0
    # B^T from y_i = sum_k AT[i,k] (G g)_k (B^T d)_k = sum_j g_j d_(i+j) for all g, d
    rows, rhs = [], []
    for i in range(M):
        for j in range(R):
            for l in range(A):
                c = np.zeros((A, A))
                c[:, l] = AT[i, :] * G[:, j]
                rows.append(c.ravel())
                rhs.append(1.0 if l == i + j else 0.0)
    x, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    BT = x.reshape(A, A)
    # integer rows of B^T: row k times s_k, G's row k divided by s_k
    for k in range(A):
        nz = np.abs(BT[k][np.abs(BT[k]) > 1e-9])
        s = 1.0  # the smallest integer that makes the row's entries integers
        while np.abs(nz * s - np.round(nz * s)).max() > 1e-9:
            s += 1.0
        BT[k] *= s
        G[k] /= s
    BT[np.abs(BT) < 1e-12] = 0.0
    return AT, G, np.round(BT, 9)


def direct(g, d):
    return np.array([[sum(g[a, b] * d[i + a, j + b] for a in range(R) for b in range(R)) for j in range(M)]
                     for i in range(M)])


def main():
    AT, G, BT = derive()
    np.set_printoptions(precision=6, suppress=True)
    print("A^T =\n", AT, "\nG =\n", G, "\nB^T =\n", BT)
    rng = np.random.default_rng(1)
    e64 = e32 = ymax = 0.0
    for _ in range(500):
        d = rng.standard_normal((A, A))
        g = rng.standard_normal((R, R))
        ref = direct(g, d)
        y = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T
        f = np.float32
        y32 = AT.astype(f) @ ((G.astype(f) @ g.astype(f) @ G.T.astype(f)) * (BT.astype(f) @ d.astype(f) @ BT.T.astype(f))) @ AT.T.astype(f)
        e64, e32 = max(e64, np.abs(y - ref).max()), max(e32, np.abs(y32 - ref).max())
        ymax = max(ymax, np.abs(ref).max())
    print(f"max |Y - direct|: float64 {e64:.3g}, float32 {e32:.3g} (|y| up to {ymax:.3g})")
    assert e64 < 1e-9 and e32 < 1e-4
    print(f"products per output: F(4x4,2x2) {A * A / (M * M):.4f}, F(2x2,2x2) {9 / 4:.4f}, direct {R * R}")
    print(f"GEMM FLOPs against F(2x2,2x2): {A * A / (M * M) / (9 / 4):.4f}; transformed weights {A * A}/9 as large")


if __name__ == "__main__":
    main()
