"""Plot bench_posttrain.py's results: accuracy change on held-out data against compression ratio.

    python tools/plot_posttrain.py bench-results/posttrain.json bench-results/posttrain.png

Needs matplotlib (bench_posttrain.py runs this with whichever interpreter has it). One panel per model,
one line per option family; the x axis is the ratio (log scale), the y axis the held-out accuracy change
in points.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {"eval": ("C3", "o", "-"), "nncodec": ("k", "s", "--"), "compact": ("C0", "^", "-")}


def main(src: str, png: str) -> int:
    with open(src) as f:
        results = json.load(f)
    models = results["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.8), squeeze=False)
    for ax, (name, m) in zip(axes[0], models.items()):
        families = {}
        for r in m["rows"]:
            if r["family"] != "lossless":
                families.setdefault(r["family"], []).append(r)
        for fam, rows in families.items():
            rows = sorted(rows, key=lambda r: r["ratio"])
            color, marker, line = STYLE.get(fam, (None, ".", ":"))
            ax.plot([r["ratio"] for r in rows], [r["d_held"] for r in rows], marker=marker, linestyle=line,
                    color=color, label=fam, linewidth=2 if fam in STYLE else 1)
        ax.axhline(-0.1, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xscale("log")
        ax.set_ylim(-2.0, 0.5)
        ax.set_xlabel("compression ratio (float32 bytes / compressed bytes)")
        ax.set_ylabel("accuracy change on held-out MNIST test rows (points)")
        ax.set_title(f"{name}: {m['float_bytes'] // 4} weights, {m['base_acc_held']:.2f} % held-out")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
