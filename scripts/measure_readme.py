"""Re-measures every figure the README quotes, by running the README's own commands.

    python scripts/measure_readme.py                       # every part (about an hour on 2 cores)
    python scripts/measure_readme.py --parts demo,masks    # some parts
    python scripts/measure_readme.py --list                # the parts and what each measures

Each part runs the commands as a user would (``python -m mim_jax...`` in a fresh process) and
prints one JSON line of figures; ``--out FILE`` also writes them all to one JSON file, and the
last lines printed are the README sentences with the new numbers filled in. Update the README
from that output, never by hand, so its figures never go stale. Timings depend on the machine and
its load: the JSON lines carry ``cpu`` and ``load_average`` next to every figure.

Parts:
  tests      ``make test``'s pytest (2 workers): the test count and the wall time.
  demo       ``make demo``: training time and img/s, the masked-patch MSE at step 10 and at the
             last step, kNN (k=20) and linear-probe top-1 on the 360 held-out digits, and the
             same protocols for the encoder at random init.
  demo-eval  kNN, linear probe and fine-tuning of the demo's run (the digits recipes): the
             README's "Demo figures" table (trains the demo first if the demo part did not).
  masks      ``bench masks`` for random and the five colours (masks/s, ratio to random).
  train-step ``bench train-step`` for ViT-Tiny and ViT-Base against transformers (needs the
             torch-export extra) and the green-mask cost.
  bf16       ``bench train-step --dtype bfloat16 --baseline-dtype float32 --vs-torch`` (ViT-Tiny):
             bfloat16 against its own float32 step and against transformers under autocast,
             the 2048^3 matmul rate in both dtypes, and the step's matmul floor
             (``bench floor``) in both dtypes.
  floor      ``bench floor --vs-torch`` for ViT-Tiny and ViT-Base.
  plan       ``bench plan`` for ViT-Huge on 64 devices: wall time, compile time, peak memory.
  compare    ``evaluate.compare``: the masking-strategy table (3 seeds, about 16 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": os.getloadavg()[0]}


def sh(args: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    """Runs a command from the repository root; returns it and its wall seconds."""
    print("$", " ".join(args), file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-3000:]}"
        )
    return done, seconds


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def part_tests(work: Path) -> dict[str, Any]:
    done, seconds = sh(
        [PY, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider"]
    )
    summary = done.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    skipped = re.search(r"(\d+) skipped", summary)
    return {
        "tests_passed": passed,
        "tests_skipped": int(skipped.group(1)) if skipped else 0,
        "seconds": round(seconds),
        "readme": (
            f"{passed} tests in about {round(seconds / 60)} minutes on {os.cpu_count()} CPU cores"
        ),
    }


def part_demo(work: Path) -> dict[str, Any]:
    run = work / "demo"
    shutil.rmtree(run, ignore_errors=True)
    _, train_s = sh(
        [PY, "-m", "mim_jax.train", "--config", "configs/demo.py", "--workdir", str(run)]
    )
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    loss = {r["step"]: r["loss"] for r in records if "loss" in r}
    last = max(loss)
    img_s = [r["img_per_s"] for r in records if "img_per_s" in r]
    knn_done, knn_s = sh([PY, "-m", "mim_jax.evaluate", "knn", "--checkpoint", str(run)])
    lin_done, lin_s = sh([PY, "-m", "mim_jax.evaluate", "linear", "--checkpoint", str(run)])
    _, rec_s = sh([PY, "-m", "mim_jax.evaluate", "reconstruct", "--checkpoint", str(run),
                   "--mask", "random,block,red,blue,green,purple"])  # fmt: skip
    _, viz_s = sh([PY, "-m", "mim_jax.masking.viz", "--out", str(run / "masks.png")])
    rnd = {}
    for protocol in ("knn", "linear"):
        done, _ = sh([PY, "-m", "mim_jax.evaluate", protocol, "--config", "configs/demo.py",
                      "--out", str(work / "demo_random_init")])  # fmt: skip
        rnd[protocol] = json_lines(done.stdout)[-1][f"{protocol}_top1"]
    knn = json_lines(knn_done.stdout)[-1]["knn_top1"]
    linear = json_lines(lin_done.stdout)[-1]["linear_top1"]
    total = train_s + knn_s + lin_s + rec_s + viz_s
    return {
        "demo_seconds": round(total),
        "train_seconds": round(train_s),
        "train_img_per_s_median": sorted(img_s)[len(img_s) // 2] if img_s else None,
        "loss_step_10": loss.get(10),
        "last_step": last,
        "loss_last_step": loss[last],
        "knn_top1": knn,
        "linear_top1": linear,
        "random_init_knn_top1": rnd["knn"],
        "random_init_linear_top1": rnd["linear"],
        "readme": (
            f"Measured here: {minutes(total)} on {os.cpu_count()} CPU cores in all (training "
            f"~{round(sorted(img_s)[len(img_s) // 2], -1):.0f} img/s); masked-patch MSE "
            f"{loss.get(10, float('nan')):.2f} at step 10, {loss[last]:.2f} at "
            f"step {last}; on the 360 held-out digits kNN (k=20) top-1 {100 * knn:.1f}% and linear "
            f"probe top-1 {100 * linear:.1f}%, against {100 * rnd['knn']:.1f}% and "
            f"{100 * rnd['linear']:.1f}% for the same encoder at random init"
        ),
    }


def part_demo_eval(work: Path) -> dict[str, Any]:
    run = work / "demo"
    if not (run / "checkpoints").exists():  # the demo part trains it; alone, train it here
        sh([PY, "-m", "mim_jax.train", "--config", "configs/demo.py", "--workdir", str(run)])
    out: dict[str, Any] = {}
    for protocol in ("knn", "linear", "finetune"):
        done, seconds = sh([PY, "-m", "mim_jax.evaluate", protocol, "--checkpoint", str(run),
                            "--out", str(work / "demo_eval")])  # fmt: skip
        out[protocol] = {**json_lines(done.stdout)[-1], "seconds": round(seconds)}
    knn, lin, fin = out["knn"], out["linear"], out["finetune"]
    rows = [
        f"| kNN, k = 20 (k = 10) | {100 * knn['knn_top1_k20']:.1f} "
        f"({100 * knn['knn_top1_k10']:.1f}) | {100 * knn['knn_top5_k20']:.1f} |",
        f"| linear probe, {lin['epochs']} epochs (every batch encoded on the training loop) | "
        f"{100 * lin['linear_top1']:.1f} | {100 * lin['linear_top5']:.1f} |",
        f"| fine-tuning, {fin['epochs']} epochs, trained position table | "
        f"{100 * fin['finetune_top1']:.1f} | {100 * fin['finetune_top5']:.1f} |",
    ]
    return {
        "top1": {p: out[p].get(f"{p}_top1") for p in out},
        "seconds": {p: out[p]["seconds"] for p in out},
        "readme": "\n".join(rows),
    }


def part_masks(work: Path) -> dict[str, Any]:
    rows = {}
    for mask in ("random", "white", "red", "blue", "green", "purple"):
        done, _ = sh([PY, "-m", "mim_jax.bench", "masks", "--mask", mask, "--grid", "14,14",
                      "--batch-size", "4096"])  # fmt: skip
        line = json_lines(done.stdout)[-1]
        rows[mask] = {"masks_per_s": line["masks_per_s"], "vs_random": line["speed_vs_baseline"]}
    table = "\n".join(
        f"| {m} | {r['masks_per_s'] / 1e3:.0f}k | {r['vs_random']:.2f} |" for m, r in rows.items()
    )
    return {"masks": rows, "readme": table}


def part_train_step(work: Path) -> dict[str, Any]:
    out = {}
    for model, repeats in (("vit_tiny", "5"), ("vit_base", "3")):
        done, _ = sh([PY, "-m", "mim_jax.bench", "train-step", "--model", model, "--image-size",
                      "224", "--patch-size", "16", "--batch-size", "32", "--mask", "random",
                      "--baseline-mask", "none", "--repeats", repeats, "--vs-torch",
                      "--peak-tflops", "measure"])  # fmt: skip
        ours, torch = json_lines(done.stdout)[:2]
        out[model] = {
            "step_s": ours["step_ms"] / 1e3, "img_per_s": ours["img_per_s"],
            "torch_step_s": torch["step_ms"] / 1e3, "torch_img_per_s": torch["img_per_s"],
            "speed_vs_torch": ours["speed_vs_torch"],
            "speed_vs_torch_per_round": ours["speed_vs_torch_per_round"],
        }  # fmt: skip
    done, _ = sh([PY, "-m", "mim_jax.bench", "train-step", "--model", "vit_tiny", "--image-size",
                  "224", "--patch-size", "16", "--batch-size", "32", "--mask", "green",
                  "--repeats", "3"])  # fmt: skip
    out["green_step_time_vs_random"] = json_lines(done.stdout)[0]["step_time_vs_baseline"]
    out["readme"] = "\n".join(
        f"| {m} | {r['step_s']:.2f} ({r['img_per_s']:.2f}) | {r['torch_step_s']:.2f} "
        f"({r['torch_img_per_s']:.2f}) | **{r['speed_vs_torch']:.2f}x** |"
        for m, r in out.items()
        if isinstance(r, dict)
    )
    return out


def part_bf16(work: Path) -> dict[str, Any]:
    done, _ = sh([PY, "-m", "mim_jax.bench", "train-step", "--model", "vit_tiny", "--batch-size",
                  "32", "--mask", "random", "--baseline-mask", "none", "--repeats", "3", "--dtype",
                  "bfloat16", "--baseline-dtype", "float32", "--vs-torch", "--peak-tflops",
                  "measure"])  # fmt: skip
    lines = json_lines(done.stdout)
    ours = lines[0]
    (f32,) = [r for r in lines if r.get("what") == "train_step" and r["dtype"] == "float32"]
    (torch,) = [r for r in lines if r.get("what") != "train_step"]
    # Best of three alternating rounds per dtype: one burst of load on a shared machine can
    # otherwise hide a dtype's rate (a single round once gave bfloat16 0.83x float32).
    check = ("from mim_jax.bench.timing import matmul_peak_tflops as p; import json; "
             "d = ('float32', 'bfloat16'); r = [{k: p(k) for k in d} for _ in range(3)]; "
             "print(json.dumps({k: max(x[k] for x in r) for k in d}))")  # fmt: skip
    matmul = json_lines(sh([PY, "-c", check])[0].stdout)[-1]
    # The step's own products at its own shapes (bench floor): what the step's ratio can reach.
    floor = {}
    for dtype in ("float32", "bfloat16"):
        done, _ = sh([PY, "-m", "mim_jax.bench", "floor", "--model", "vit_tiny", "--batch-size",
                      "32", "--dtype", dtype, "--repeats", "3"])  # fmt: skip
        floor[dtype] = json_lines(done.stdout)[0]["floor_ms"] / 1e3
    out = {
        "bf16_step_s": ours["step_ms"] / 1e3,
        "f32_step_s": f32["step_ms"] / 1e3,
        "torch_autocast_step_s": torch["step_ms"] / 1e3,
        "bf16_vs_f32": ours["speed_vs_float32"],
        "bf16_vs_torch_autocast": ours["speed_vs_torch"],
        "bf16_vs_f32_per_round": ours["speed_vs_float32_per_round"],
        "bf16_vs_torch_autocast_per_round": ours["speed_vs_torch_per_round"],
        "matmul_tflops": matmul,
        "floor_s": floor,
    }
    out["readme"] = (
        f"| 2048^3 matmul, bfloat16 vs float32 (JAX) | "
        f"{matmul['bfloat16'] / matmul['float32']:.2f}x | (hardware check) |\n"
        f"| the step's matmul floor (`bench floor`), bfloat16 vs float32 | "
        f"{floor['float32'] / floor['bfloat16']:.2f}x ({floor['bfloat16']:.2f} s vs "
        f"{floor['float32']:.2f} s) | (bound on the step's ratio) |\n"
        f"| mim_jax bfloat16 step vs transformers under autocast | "
        f"**{out['bf16_vs_torch_autocast']:.2f}x** ({out['bf16_step_s']:.2f} s vs "
        f"{out['torch_autocast_step_s']:.2f} s) | >= 1.2x |\n"
        f"| mim_jax bfloat16 step vs its own float32 step (interleaved) | "
        f"**{out['bf16_vs_f32']:.2f}x** ({out['bf16_step_s']:.2f} s vs {out['f32_step_s']:.2f} s)"
        " | >= 1.5x |"
    )
    return out


def part_floor(work: Path) -> dict[str, Any]:
    out = {}
    for model in ("vit_tiny", "vit_base"):
        done, _ = sh([PY, "-m", "mim_jax.bench", "floor", "--model", model, "--batch-size", "32",
                      "--vs-torch"])  # fmt: skip
        out[model] = {line.get("framework", line["what"]): line.get("floor_ms")
                      for line in json_lines(done.stdout)}  # fmt: skip
    return out


def part_plan(work: Path) -> dict[str, Any]:
    done, seconds = sh([PY, "-m", "mim_jax.bench", "plan", "--model", "vit_huge", "--mesh",
                        "fsdp=64", "--batch-size", "4096", "--device-memory-gb", "95"])  # fmt: skip
    line = json_lines(done.stdout)[-1]
    gb = {k: v / 1e9 for k, v in line.items() if k.endswith("bytes_per_device")}
    return {
        "wall_seconds": round(seconds),
        "compile_s": line.get("compile_s"),
        "lower_s": line.get("lower_s"),
        "gb_per_device": gb,
        "fits": line.get("fits"),
        "readme": (
            f"lowering {line.get('lower_s', float('nan')):.1f} s, compile "
            f"{line.get('compile_s', float('nan')):.0f} s, {minutes(seconds)} wall; peak "
            f"{gb.get('peak_bytes_per_device', float('nan')):.1f} GB per device"
        ),
    }


def part_compare(work: Path) -> dict[str, Any]:
    done, seconds = sh([PY, "-m", "mim_jax.evaluate.compare", "--steps", "1000", "--seeds",
                        "0,1,2", "--workdir", str(work / "compare")])  # fmt: skip
    table = "\n".join(line for line in done.stdout.splitlines() if line.startswith("|"))
    return {"seconds": round(seconds), "readme": table}


PARTS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "tests": part_tests,
    "demo": part_demo,
    "demo-eval": part_demo_eval,
    "masks": part_masks,
    "train-step": part_train_step,
    "bf16": part_bf16,
    "floor": part_floor,
    "plan": part_plan,
    "compare": part_compare,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", help="also write every part's figures to this JSON file")
    parser.add_argument("--list", action="store_true", help="list the parts and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(PARTS))
        return 0
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; valid: {', '.join(PARTS)}")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="measure_readme_"))
    results = {}
    for name in parts:
        figures = {"part": name, **machine(), **PARTS[name](work)}
        results[name] = figures
        print(json.dumps(figures), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print("\nREADME text with these figures:")
    for name, figures in results.items():
        if "readme" in figures:
            print(f"[{name}]\n{figures['readme']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
